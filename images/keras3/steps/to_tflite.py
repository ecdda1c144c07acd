"""Convert a Keras 3 (.keras, .h5) or tf_keras 2.16+ (.h5) model to TFLite with TF 2.21's converter.

    to_tflite.py --from keras --input MODEL --out DIR [tflite_convert's options]
"""

import keras_files
import tflite_convert
from common import reject


def main():
    args = tflite_convert.arguments()
    if args.source != "keras":
        reject(f"this stack converts Keras files, not '{args.source}'")
    model, facts = keras_files.load(args.input)
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    samples = tflite_convert.quantize(converter, args, keras_files.input_specs(model))
    tflite_convert.convert(converter, args, samples, producer=facts)


if __name__ == "__main__":
    main()
