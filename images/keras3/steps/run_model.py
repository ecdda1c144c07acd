"""Run a model for verification in the keras3 stack: Keras 3 / tf_keras files, SavedModels of TF 2.16+, and TFLite
models (LiteRT).

    run_model.py --format keras|keras_saved_model|tflite|tf_saved_model|tf_hub --input MODEL --out DIR
                 (--plan JSON | --inputs REF/inputs.json)
See common.verification_run for what it writes.
"""

import keras_files
from common import runner_arguments, verification_run
from saved_model_runtime import SignatureModel
from tflite_runtime import TFLiteModel


def main():
    args = runner_arguments(formats=("keras", "keras_saved_model", "tflite", "tf_saved_model", "tf_hub"),
                            options=("signature_name", "saved_model_tags"))
    info = {}
    if args.format in ("keras", "keras_saved_model"):
        model = keras_files.KerasModel(args.input)
        info["producer"] = model.facts
    elif args.format in ("tf_saved_model", "tf_hub"):
        model = SignatureModel(args.input, args.saved_model_tags, args.signature_name or "serving_default")
    else:
        model = TFLiteModel(args.input)
        info["tensors"] = model.details()
        info["interpreter"] = model.interpreter_name
        info["transpose_ops"] = model.op_counts().get("TRANSPOSE", 0)
    verification_run(model, args, info)


if __name__ == "__main__":
    main()
