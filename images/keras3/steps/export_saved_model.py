"""Export a Keras 3 (.keras, .h5) or tf_keras 2.16+ (.h5) model as a TensorFlow SavedModel (its inference
function as the serving_default signature), for the converters that read SavedModels (e.g. TF.js graph models).

    export_saved_model.py --input MODEL --out DIR
Writes DIR/saved_model.
"""

import argparse
import os

import keras_files
from common import fail, first_line, step_done


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--input", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    model, facts = keras_files.load(args.input)
    target = os.path.join(args.out, "saved_model")
    try:
        if facts["library"] == "tf_keras":
            import tensorflow as tf

            tf.saved_model.save(model, target)
        else:
            model.export(target, format="tf_saved_model", verbose=False)
    except Exception as exc:
        fail(f"exporting {os.path.basename(args.input)} as a SavedModel failed ({first_line(exc)})")
    step_done(args.out, ["saved_model"], producer=facts, inputs=[s.name for s in keras_files.input_specs(model)])


if __name__ == "__main__":
    main()
