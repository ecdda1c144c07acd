"""Write the Keras files people save today, with a small random-weight CNN and calibration data.

    make_keras.py --kind keras3|tf-keras --out DIR [--seed N]
keras3: model.keras (Keras 3's own format) and model.h5 (Keras 3's HDF5); tf-keras: model.h5 saved by tf_keras 2.21
(TF_USE_LEGACY_KERAS=1, what TF.js users are told to do). Both with calibration.npy; nothing is downloaded.
"""

import argparse
import os

import numpy as np

from common import step_done


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


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--kind", default="keras3", choices=("keras3", "tf-keras"))
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    if args.kind == "tf-keras":
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
        import tf_keras as library
    else:
        import keras as library
    library.utils.set_random_seed(args.seed)
    model = cnn(library)
    files = []
    if args.kind == "keras3":
        model.save(os.path.join(args.out, "model.keras"))
        files.append("model.keras")
    model.save(os.path.join(args.out, "model.h5"))
    files.append("model.h5")
    rng = np.random.default_rng(args.seed)
    np.save(os.path.join(args.out, "calibration.npy"), rng.uniform(0, 1, (16, 32, 32, 3)).astype(np.float32))
    step_done(args.out, files + ["calibration.npy"], inputs=["image"], outputs=["probs"],
              saved_by=f"{library.__name__} {library.__version__}")


if __name__ == "__main__":
    main()
