"""`orchestrator inspect` in the TF2 stack: Keras H5 and Keras SavedModels (tf.keras 2.15), SavedModels, TF Hub
modules, frozen graphs, and the readers every stack has (TFLite, TF.js model.json, Darknet .cfg).

    inspect_model.py --format F --input MODEL --out DIR
"""

import os

import model_info
import tf_model_info
from models import load_keras


def keras(args):
    producer = {}
    if os.path.isfile(args.input):
        import h5py

        with h5py.File(args.input, "r") as fh:
            producer = {k: model_info._text(fh.attrs[k]) for k in ("keras_version", "backend") if k in fh.attrs}
    import tensorflow as tf

    producer["read_with"] = "tf.keras of tensorflow " + tf.__version__
    return model_info.keras_model(load_keras(args.input), args.input, args.format, producer)


def saved_model(args):
    return tf_model_info.saved_model(args.input, args.saved_model_tags, args.signature_name, args.format)


if __name__ == "__main__":
    model_info.main({"keras": keras, "keras_saved_model": keras, "tf_saved_model": saved_model,
                     "tf_hub": saved_model, "tf_frozen_model": lambda a: tf_model_info.frozen_graph(a.input)})
