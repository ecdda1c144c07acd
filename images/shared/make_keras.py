"""Write the Keras files people save today, with a small random-weight CNN and calibration data.

    make_keras.py --kind keras3|tf-keras|keras3-gaps|keras3-torch|keras3-jax --out DIR [--seed N]
keras3: model.keras (Keras 3's own format), model.h5 (Keras 3's HDF5) and sequential.keras (a Sequential MLP);
tf-keras: model.h5 and keras_saved_model/ saved by tf_keras 2.21 (TF_USE_LEGACY_KERAS=1, what TF.js users are told
to do), and saved_model/ (tf.saved_model.save of TF 2.21); keras3-gaps: tfjs_gap.keras (a GroupNormalization, which
Keras 2 has and TF.js does not) and keras3_only.keras (an RMSNormalization, which Keras 2 does not have).
keras3-torch / keras3-jax: model.keras and model.h5 of the same CNN written by Keras 3 with the PyTorch / JAX
backend (in the torch / litert_torch stack, which have Keras and that backend but no TensorFlow). All with
calibration.npy; nothing is downloaded. Shared: the keras3 stack makes the TensorFlow-backend kinds.
"""

import argparse
import os

import numpy as np

from common import step_done


BACKENDS = {"keras3-torch": "torch", "keras3-jax": "jax"}  # kinds written with another Keras 3 backend


def cnn(library):
    L = library.layers
    x = L.Input((32, 32, 3), name="image")
    y = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    y = L.BatchNormalization()(y)
    y = L.MaxPooling2D()(y)
    y = L.DepthwiseConv2D(3, padding="same", activation="relu6")(y)
    y = L.Conv2D(16, 1, activation="relu")(y)
    y = L.GlobalAveragePooling2D(name="features")(y)
    return library.Model(x, L.Dense(5, activation="softmax", name="probs")(y), name="small_cnn")


def sequential(library):
    L = library.layers
    return library.Sequential([L.Input((12,), name="features"), L.Dense(16, activation="tanh"), L.Dropout(0.2),
                               L.Dense(8, activation="elu"), L.Dense(3, name="scores")], name="small_mlp")


def gaps(library):
    """{file: model} of layers a TF.js layers model cannot hold."""
    L = library.layers
    x = L.Input((8, 8, 4), name="image")
    y = L.GroupNormalization(groups=2, name="group_norm")(L.Conv2D(8, 3, padding="same")(x))
    tfjs_gap = library.Model(x, L.Dense(3, name="probs")(L.GlobalAveragePooling2D()(y)), name="tfjs_gap")
    v = L.Input((8,), name="features")
    keras3_only = library.Model(v, L.Dense(3, name="scores")(L.RMSNormalization(name="rms")(v)), name="keras3_only")
    return {"tfjs_gap.keras": tfjs_gap, "keras3_only.keras": keras3_only}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--kind", default="keras3", choices=("keras3", "tf-keras", "keras3-gaps", "keras3-torch", "keras3-jax"))
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    if args.kind == "tf-keras":
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
        import tf_keras as library
    else:
        if args.kind in BACKENDS:
            os.environ["KERAS_BACKEND"] = BACKENDS[args.kind]
        import keras as library
    library.utils.set_random_seed(args.seed)
    if args.kind == "keras3-gaps":
        made = gaps(library)
        for name, model in made.items():
            model.save(os.path.join(args.out, name))
        step_done(args.out, sorted(made), saved_by=f"{library.__name__} {library.__version__}")
        return
    model = cnn(library)
    files = []
    if args.kind in BACKENDS:
        model.save(os.path.join(args.out, "model.keras"))
        files.append("model.keras")
    if args.kind == "keras3":
        model.save(os.path.join(args.out, "model.keras"))
        sequential(library).save(os.path.join(args.out, "sequential.keras"))
        files += ["model.keras", "sequential.keras"]
    model.save(os.path.join(args.out, "model.h5"))
    files.append("model.h5")
    if args.kind == "tf-keras":
        import tensorflow as tf

        model.save(os.path.join(args.out, "keras_saved_model"), save_format="tf")
        tf.saved_model.save(model, os.path.join(args.out, "saved_model"))
        files += ["keras_saved_model", "saved_model"]
    rng = np.random.default_rng(args.seed)
    np.save(os.path.join(args.out, "calibration.npy"), rng.uniform(0, 1, (16, 32, 32, 3)).astype(np.float32))
    backend = library.backend.backend() if hasattr(library.backend, "backend") else "tensorflow"
    step_done(args.out, files + ["calibration.npy"], inputs=["image"], outputs=["probs"],
              saved_by=f"{library.__name__} {library.__version__}", backend=backend)


if __name__ == "__main__":
    main()
