"""Write a small random-weight model (and matching calibration data) for tests and demos.

    make_model.py --kind cnn|saturated|saturated-scaled|mlp|multi|head|lstm|tfjs-ops|mobilenetv2
                  --format keras|keras_saved_model|tf_saved_model|tf_frozen_model --out DIR [--seed N]
Writes DIR/<artifact> and DIR/calibration.npy (or .npz for several inputs); nothing is downloaded.
"""

import argparse
import os

import numpy as np

from common import step_done

ARTIFACT = {"keras": "model.h5", "keras_saved_model": "keras_saved_model", "tf_saved_model": "saved_model",
            "tf_frozen_model": "frozen_model.pb"}


DATA_INIT = ("mobilenetv2",)  # kinds whose batch-norm statistics come from random images


def build(kind):
    import tensorflow as tf

    L = tf.keras.layers
    if kind in ("cnn", "saturated", "saturated-scaled"):
        x = L.Input((32, 32, 3), name="image")
        # the saturated kinds have non-zero biases, as trained models do (a zeroed bias must make a difference)
        bias = "random_normal" if kind.startswith("saturated") else "zeros"
        y = L.Conv2D(8, 3, padding="same", activation="relu", bias_initializer=bias)(x)
        y = L.BatchNormalization()(y)
        y = L.MaxPooling2D()(y)
        y = L.DepthwiseConv2D(3, padding="same", activation="relu6")(y)
        y = L.Conv2D(16, 1, activation="relu")(y)
        y = L.GlobalAveragePooling2D(name="features")(y)
        if kind.startswith("saturated"):  # logits in the hundreds: the softmax is one-hot on any input
            init = tf.keras.initializers.RandomNormal(stddev=300.0)
            if kind == "saturated-scaled":  # ... and rescaled after it, which hides where the logits are
                y = L.Dense(10, activation="softmax", kernel_initializer=init)(y)
                return tf.keras.Model(x, L.Rescaling(0.5, name="probs")(y), name="saturated_scaled_cnn")
            y = L.Dense(10, activation="softmax", name="probs", kernel_initializer=init)(y)
            return tf.keras.Model(x, y, name="saturated_cnn")
        y = L.Dense(5, activation="softmax", name="probs")(y)
        return tf.keras.Model(x, y, name="small_cnn")
    if kind == "tfjs-ops":
        return tfjs_ops(tf)
    if kind == "mobilenetv2":  # the bench's production-sized model: 3.5 M parameters, random weights (no download)
        return tf.keras.applications.MobileNetV2(input_shape=(224, 224, 3), weights=None, classes=1000)
    if kind == "lstm":  # a recurrent model: TF.js graph models refuse its control flow
        x = L.Input((6, 4), name="sequence")
        y = L.LSTM(8)(x)
        return tf.keras.Model(x, L.Dense(2, name="score")(y), name="small_lstm")
    if kind == "head":  # a classification head for the cnn's 16 "features" (the gesture-classifier case)
        x = L.Input((16,), name="activations")
        y = L.Dense(8, activation="relu")(x)
        return tf.keras.Model(x, L.Dense(4, activation="softmax", name="gesture")(y), name="head")
    if kind == "mlp":
        x = L.Input((10,), name="features")
        y = L.Dense(16, activation="tanh")(x)
        y = L.Dense(3, name="logits")(y)
        return tf.keras.Model(x, y, name="small_mlp")
    if kind == "flex":  # a TF op with no TFLite builtin (MatrixInverse): converts only with --allow_flex_ops
        x = L.Input((4, 4), name="matrix")
        y = L.Lambda(lambda m: tf.linalg.inv(m + 4.0 * tf.eye(4)), name="inverse")(x)
        return tf.keras.Model(x, L.Dense(3, name="score")(L.Flatten()(y)), name="flex_inverse")
    if kind == "multi":
        a = L.Input((8,), name="a")
        b = L.Input((4,), name="b")
        y = L.Concatenate()([L.Dense(6, activation="relu")(a), b])
        return tf.keras.Model([a, b], [L.Dense(2, name="out_x")(y), L.Dense(3, activation="sigmoid", name="out_y")(y)],
                              name="two_in_two_out")
    raise SystemExit(f"unknown kind {kind}")


def tfjs_ops(tf):
    """A model whose TF.js graph holds every form of tfjs_emitted_ops.json (beside this script) that the converter
    writes by default, in one graph fixed to batch 1 with an int32 input: Conv2D, DepthwiseConv2D (with and without
    bias) and Dense with each activation the converter fuses into them (Dense also with Sigmoid and Tanh, which only
    oneDNN fuses), PReLU alone, adds the converter takes for biases (a residual, another layer's output), a
    transposed MatMul, and an Embedding of int32 ids (its vocabulary under 10, the default integer range)."""
    L = tf.keras.layers
    bias = "random_normal"  # a zero bias is folded away before the converter fuses anything
    alphas = tf.keras.initializers.RandomUniform(0.1, 0.5)
    image = L.Input((6, 6, 3), batch_size=1, name="image")
    ids = L.Input((4,), batch_size=1, dtype="int32", name="ids")
    activations = {"linear": None, "relu": L.ReLU, "relu6": lambda: L.ReLU(6.0), "elu": lambda: L.Activation("elu"),
                   "leaky": lambda: L.LeakyReLU(0.3), "prelu": lambda: L.PReLU(alphas, shared_axes=[1, 2]),
                   "sigmoid": lambda: L.Activation("sigmoid"), "tanh": lambda: L.Activation("tanh")}
    pool = L.GlobalAveragePooling2D
    conv, depthwise, dense = [], [], []
    flat = L.Flatten()(image)
    for name, act in activations.items():
        def then(y):
            return act()(y) if act else y
        if name not in ("sigmoid", "tanh"):  # the converter fuses these into MatMul only
            conv.append(pool()(then(L.Conv2D(3, 3, padding="same", bias_initializer=bias, name=f"conv_{name}")(image))))
        if name not in ("leaky", "sigmoid", "tanh"):
            y = L.DepthwiseConv2D(3, padding="same", bias_initializer=bias, name=f"depthwise_{name}")(image)
            depthwise.append(pool()(then(y)))
        if name in ("relu", "relu6", "elu"):  # no bias: fused with the activation alone
            y = L.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"depthwise_nobias_{name}")(image)
            depthwise.append(pool()(then(y)))
        y = L.Dense(4, bias_initializer=bias, name=f"dense_{name}")(flat)
        dense.append(L.PReLU(alphas)(y) if name == "prelu" else then(y))
    # the converter turns an add right after a contraction into its BiasAdd, whatever is added
    residual = L.Conv2D(3, 3, padding="same", use_bias=False, name="conv_residual")(image)
    conv.append(pool()(L.Add()([residual, image])))
    a = L.Dense(5, bias_initializer=bias, name="dense_a")(flat)
    b = L.Dense(5, bias_initializer=bias, name="dense_b")(flat)
    c = L.Dense(1, bias_initializer=bias, name="dense_c")(flat)
    dense.append(L.ReLU()(L.Add()([tf.linalg.matmul(a, b, transpose_b=True), c])))
    # a PReLU after a batch norm: the converter's own Prelu op, left unfused
    misc = [pool()(L.PReLU(alphas, shared_axes=[1, 2], name="prelu_alone")(L.BatchNormalization()(L.ReLU()(image))))]
    embedded = L.Flatten()(L.Embedding(7, 3, name="embedding")(ids))
    misc.append(L.Dense(3, activation="relu", bias_initializer=bias, name="dense_embedded")(embedded))
    misc.append(L.Dense(2, bias_initializer=bias, name="dense_ids")(tf.cast(ids, "float32") / 7.0))
    outputs = [L.Concatenate(name=n)(ys) for n, ys in (("conv", conv), ("depthwise", depthwise), ("dense", dense),
                                                       ("misc", misc))]
    return tf.keras.Model([image, ids], outputs, name="tfjs_ops")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--kind", default="cnn")
    p.add_argument("--format", default="keras", choices=sorted(ARTIFACT))
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    import tensorflow as tf

    tf.keras.utils.set_random_seed(args.seed)
    model = build(args.kind)
    # give BatchNormalization non-trivial statistics so conversions have something to fold
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            rng = np.random.default_rng(args.seed)
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.uniform(-0.2, 0.2, n),
                               rng.uniform(-0.1, 0.1, n), rng.uniform(0.5, 1.5, n)])
    if args.kind in DATA_INIT:  # a deep net's random outputs fade into a constant: take batch-norm statistics from
        bns = [l for l in model.layers if isinstance(l, tf.keras.layers.BatchNormalization)]  # random images
        for layer in bns:
            layer.momentum = 0.0  # moving stats := this batch's
        shape = (16,) + tuple(model.inputs[0].shape[1:])
        model(np.random.default_rng(args.seed).uniform(-1, 1, shape).astype("float32"), training=True)
        for layer in bns:
            layer.momentum = 0.99
    target = os.path.join(args.out, ARTIFACT[args.format])
    info = {"kind": args.kind, "inputs": model.input_names, "outputs": model.output_names}
    if args.format == "keras":
        model.save(target, save_format="h5")
    elif args.format == "keras_saved_model":
        model.save(target, save_format="tf")
    elif args.format == "tf_saved_model":
        specs = [tf.TensorSpec(t.shape, t.dtype, name=n) for n, t in zip(model.input_names, model.inputs)]

        @tf.function(input_signature=specs)
        def serve(*xs):
            outs = model(list(xs) if len(xs) > 1 else xs[0], training=False)
            outs = outs if isinstance(outs, (list, tuple)) else [outs]
            return {n: o for n, o in zip(model.output_names, outs)}

        module = tf.Module()
        module.model = model
        tf.saved_model.save(module, target, signatures={"serving_default": serve})
    else:
        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

        specs = [tf.TensorSpec([1, *t.shape[1:]], t.dtype, name=n) for n, t in zip(model.input_names, model.inputs)]
        fn = tf.function(lambda *xs: model(list(xs) if len(xs) > 1 else xs[0], training=False))
        frozen = convert_variables_to_constants_v2(fn.get_concrete_function(*specs))
        gd = frozen.graph.as_graph_def()
        with open(target, "wb") as fh:
            fh.write(gd.SerializeToString())
        info["input_arrays"] = [t.name.split(":")[0] for t in frozen.inputs]
        info["output_arrays"] = [t.name.split(":")[0] for t in frozen.outputs]
        info["input_shapes"] = ":".join(",".join(str(d) for d in s.shape) for s in specs)
    rng = np.random.default_rng(args.seed + 100)
    # integer inputs index an Embedding: draw them below its vocabulary
    vocabulary = min([la.input_dim for la in model.layers if isinstance(la, tf.keras.layers.Embedding)] or [10])
    calib = {n: (rng.uniform(-1, 1, (32, *t.shape[1:])).astype("float32") if t.dtype.is_floating else
                 rng.integers(0, vocabulary, (32, *t.shape[1:])).astype(t.dtype.as_numpy_dtype))
             for n, t in zip(model.input_names, model.inputs)}
    if len(calib) == 1:
        np.save(os.path.join(args.out, "calibration.npy"), next(iter(calib.values())))
    else:
        np.savez(os.path.join(args.out, "calibration.npz"), **calib)
    step_done(args.out, [ARTIFACT[args.format]], **info)


if __name__ == "__main__":
    main()
