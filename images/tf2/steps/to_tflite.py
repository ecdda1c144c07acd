"""Convert a Keras / SavedModel / frozen-graph model to TFLite with the TFLite converter.

    to_tflite.py --from keras|keras_saved_model|tf_saved_model|tf_frozen_model --input PATH --out DIR
                 [--quantize none|float16|dynamic|int8 [--calibration FILE_OR_DIR]
                  [--inference_input_type T] [--inference_output_type T]]
                 [--signature_name S] [--saved_model_tags T,..] [--input_arrays ..] [--output_arrays ..]
                 [--input_shapes ..] [--allow_custom_ops true|false]
"""

import models
import tflite_convert
from common import csv, reject


def make_converter(args):
    import tensorflow as tf

    src = args.source
    if src in ("keras", "keras_saved_model"):
        model = models.load_keras(args.input)
        specs = [models.Spec(n, t.shape, t.dtype.as_numpy_dtype) for n, t in zip(model.input_names, model.inputs)]
        return tf.lite.TFLiteConverter.from_keras_model(model), specs
    if src in ("tf_saved_model", "tf_hub"):  # a TF2 Hub module is a SavedModel
        sm = models.SavedModel(args.input, args)  # validates tags and signature with a clear message
        tags = csv(args.saved_model_tags) or ["serve"]
        conv = tf.lite.TFLiteConverter.from_saved_model(args.input, signature_keys=[args.signature_name],
                                                        tags=set(tags))
        return conv, sm.inputs
    if src == "tf_frozen_model":
        fg = models.FrozenGraph(args.input, args)
        in_shapes = {s.name: [d if d is not None else 1 for d in s.shape] for s in fg.inputs}
        conv = tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(
            args.input, [s.name for s in fg.inputs], fg.output_names, input_shapes=in_shapes)
        return conv, fg.inputs
    reject(f"to_tflite cannot convert from '{src}'")


def main():
    args = tflite_convert.arguments()
    converter, specs = make_converter(args)
    samples = tflite_convert.quantize(converter, args, specs, by_name=args.source in ("tf_saved_model", "tf_hub"))
    tflite_convert.convert(converter, args, samples, make_float=lambda: make_converter(args)[0])


if __name__ == "__main__":
    main()
