"""Convert with TF 2.21's TFLite converter: Keras 3 (.keras, .h5) and tf_keras 2.16+ (.h5, SavedModel folder)
models, and SavedModels / TF2 Hub modules written by TF 2.16+.

    to_tflite.py --from keras|keras_saved_model|tf_saved_model|tf_hub --input MODEL --out DIR [tflite_convert's options]
"""

import keras_files
import tflite_convert
from common import csv, reject
from saved_model_runtime import SignatureModel


def make_converter(args):
    """(converter, input specs, whether calibration arrays go by input name, producer facts)."""
    import tensorflow as tf

    if args.source in ("keras", "keras_saved_model"):
        model, facts = keras_files.load(args.input)
        return tf.lite.TFLiteConverter.from_keras_model(model), keras_files.input_specs(model), False, facts
    if args.source in ("tf_saved_model", "tf_hub"):  # a TF2 Hub module is a SavedModel
        signature = args.signature_name or "serving_default"
        specs = SignatureModel(args.input, args.saved_model_tags, signature).inputs  # a clear message on bad tags
        converter = tf.lite.TFLiteConverter.from_saved_model(
            args.input, signature_keys=[signature], tags=set(csv(args.saved_model_tags) or ["serve"]))
        return converter, specs, True, {}
    reject(f"this stack converts Keras files and SavedModels, not '{args.source}'")


def main():
    args = tflite_convert.arguments()
    converter, specs, by_name, facts = make_converter(args)
    samples = tflite_convert.quantize(converter, args, specs, by_name=by_name)
    tflite_convert.convert(converter, args, samples, make_float=lambda: make_converter(args)[0],
                           **({"producer": facts} if facts else {}))


if __name__ == "__main__":
    main()
