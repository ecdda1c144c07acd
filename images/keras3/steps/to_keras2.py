"""Rewrite a Keras 3 (.keras, .h5) or tf_keras 2.16+ model as a Keras 2 HDF5 file that tensorflowjs and the TF.js
layers runtime read: the config translated into Keras 2's grammar (keras2_config.py), the model rebuilt from it with
tf_keras (which proves the translation is well-formed), each layer's weights copied by layer name, saved as HDF5.

    to_keras2.py --input MODEL --out DIR
Writes DIR/model.h5 (its model_config is the translated config, exactly) and DIR/step.json.
"""

import argparse
import inspect
import json
import os

import keras_files
from common import fail, first_line, reject, step_done
from keras2_config import Translator, Untranslatable, layer_classes

TFJS_LAYERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tfjs_layers.json")

# the keyword arguments every tf_keras Layer takes besides its own (tf_keras' base Layer allowed_kwargs)
LAYER_KWARGS = {"trainable", "name", "dtype", "dynamic", "input_dim", "input_shape", "batch_input_shape",
                "batch_size", "weights", "activity_regularizer", "autocast", "implementation"}


def known_keys(cls_name, kind):
    import tf_keras

    where = {"layer": tf_keras.layers, "layers": tf_keras.layers, "initializers": tf_keras.initializers,
             "regularizers": tf_keras.regularizers, "constraints": tf_keras.constraints}.get(kind)
    cls = getattr(where, cls_name, None) if where is not None else None
    if not inspect.isclass(cls):
        return None
    keys = set(LAYER_KWARGS) if issubclass(cls, tf_keras.layers.Layer) else set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(inspect.unwrap(vars(klass)["__init__"])).parameters.values()
        keys |= {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name != "self"}
    return keys


def serialize(model, facts):
    if facts["library"] == "tf_keras":
        import tf_keras as library
    else:
        import keras as library
    return library.saving.serialize_keras_object(model)


SELF_CHECK_TOLERANCE = 1e-4  # of the output scale: the two models hold the same float32 weights


def self_check(original, rebuilt, specs, seed=0):
    """Run the original and its Keras 2 form on the same random inputs: the largest difference relative to the
    output scale (a translation that changes what the model computes fails the step here, not later)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    feeds = []
    for spec in specs:
        shape = [2] + [d if d else 4 for d in list(spec.shape)[1:]]
        if np.issubdtype(spec.dtype, np.integer):
            feeds.append(rng.integers(0, 2, shape).astype(spec.dtype))
        else:
            feeds.append(rng.uniform(-1, 1, shape).astype(spec.dtype))
    x = feeds if len(feeds) > 1 else feeds[0]
    a, b = original(x, training=False), rebuilt(x, training=False)
    a, b = (list(v) if isinstance(v, (list, tuple)) else [v] for v in (a, b))
    worst = 0.0
    for u, v in zip(a, b):
        u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
        worst = max(worst, float(np.max(np.abs(u - v))) / max(float(np.max(np.abs(u))), 1e-12))
    return worst


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--input", required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    name = os.path.basename(args.input)
    model, facts = keras_files.load(args.input)
    translator = Translator(known_keys)
    try:
        config = translator.model(serialize(model, facts))
    except Untranslatable as exc:
        reject(f"{args.input}: cannot be written as a Keras 2 model for TF.js layers models: {exc}; convert it to "
               "tfjs_graph_model instead")
    with open(TFJS_LAYERS) as fh:
        tfjs = json.load(fh)
    missing = [(layer, cls) for layer, cls in layer_classes(config) if cls not in tfjs["layers"]]
    if missing:
        shown = ", ".join(f"'{layer}' ({cls})" for layer, cls in missing[:5])
        reject(f"{args.input}: the TF.js layers runtime (tfjs {tfjs['tfjs']}) has no layer class for "
               f"{shown}{' and more' if len(missing) > 5 else ''}; convert it to tfjs_graph_model instead")
    import h5py
    import tf_keras

    try:
        rebuilt = tf_keras.models.model_from_json(json.dumps(config))
    except Exception as exc:
        fail(f"{name}: the Keras 2 translation of its config does not build in tf_keras ({first_line(exc)})")
    copied = 0
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        target = rebuilt.get_layer(layer.name)
        if len(target.get_weights()) != len(weights):
            fail(f"{name}: layer '{layer.name}' holds {len(weights)} weights; its Keras 2 form holds "
                 f"{len(target.get_weights())}")
        try:
            target.set_weights(weights)
        except ValueError as exc:
            fail(f"{name}: layer '{layer.name}': its weights do not fit its Keras 2 form ({first_line(exc)})")
        copied += len(weights)
    error = self_check(model, rebuilt, keras_files.input_specs(model))
    if not error <= SELF_CHECK_TOLERANCE:
        fail(f"{name}: its Keras 2 form computes something else (max error {error:.3g} of the output scale on random "
             "inputs)")
    target = os.path.join(args.out, "model.h5")
    rebuilt.save(target, save_format="h5")
    with h5py.File(target, "r+") as f:  # what tf_keras 2.21 re-serializes adds keys Keras 2.15 does not know
        f.attrs["model_config"] = json.dumps(config)
    step_done(args.out, ["model.h5"], producer=facts,
              keras2={"written_by": f"tf_keras {tf_keras.__version__}", "weights_copied": copied,
                      "self_check_max_error": error,
                      "dropped_neutral_keys": translator.dropped[:50], "dropped_count": len(translator.dropped)})


if __name__ == "__main__":
    main()
