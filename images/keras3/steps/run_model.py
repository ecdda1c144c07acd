"""Run a model for verification in the keras3 stack: Keras 3 / tf_keras files, and TFLite models (LiteRT).

    run_model.py --format keras|tflite|tf_saved_model --input MODEL --out DIR (--plan JSON | --inputs REF/inputs.json)
See common.verification_run for what it writes.
"""

import keras_files
from common import runner_arguments, verification_run
from saved_model_runtime import SignatureModel
from tflite_runtime import TFLiteModel


def main():
    args = runner_arguments(formats=("keras", "tflite", "tf_saved_model"),
                            options=("signature_name", "saved_model_tags"))
    info = {}
    if args.format == "keras":
        model = keras_files.KerasModel(args.input)
        info["producer"] = model.facts
    elif args.format == "tf_saved_model":
        model = SignatureModel(args.input, args.saved_model_tags, args.signature_name or "serving_default")
    else:
        model = TFLiteModel(args.input)
        info["tensors"] = model.details()
        info["interpreter"] = model.interpreter_name
    verification_run(model, args, info)


if __name__ == "__main__":
    main()
