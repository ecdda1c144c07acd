"""`orchestrator inspect` in the keras3 stack: Keras 3 .keras/.h5 and tf_keras 2.16+ files, SavedModels of
TF 2.16+, and the readers every stack has (TFLite, TF.js model.json, Darknet .cfg).

    inspect_model.py --format F --input MODEL --out DIR
"""

import keras_files
import model_info
import tf_model_info


def keras(args):
    model, facts = keras_files.load(args.input)
    return model_info.keras_model(model, args.input, args.format, facts)


def saved_model(args):
    return tf_model_info.saved_model(args.input, args.saved_model_tags, args.signature_name, args.format)


if __name__ == "__main__":
    model_info.main({"keras": keras, "keras_saved_model": keras, "tf_saved_model": saved_model,
                     "tf_hub": saved_model, "tf_frozen_model": lambda a: tf_model_info.frozen_graph(a.input)})
