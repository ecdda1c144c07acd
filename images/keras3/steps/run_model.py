"""Run a model for verification in the keras3 stack: Keras 3 / tf_keras files, and TFLite models (LiteRT).

    run_model.py --format keras|tflite --input MODEL --out DIR (--plan JSON | --inputs REF_DIR/inputs.json)
See common.verification_run for what it writes.
"""

import keras_files
from common import runner_arguments, verification_run
from tflite_runtime import TFLiteModel


def main():
    args = runner_arguments(formats=("keras", "tflite"))
    info = {}
    if args.format == "keras":
        model = keras_files.KerasModel(args.input)
        info["producer"] = model.facts
    else:
        model = TFLiteModel(args.input)
        info["tensors"] = model.details()
        info["interpreter"] = model.interpreter_name
    verification_run(model, args, info)


if __name__ == "__main__":
    main()
