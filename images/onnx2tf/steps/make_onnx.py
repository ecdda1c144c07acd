"""ONNX models as exporters other than torch.onnx write them, built node by node with onnx.helper (random weights,
seeded), for the failure classes of models from the wild.

    make_onnx.py --kind KIND --seed N --out DIR        writes DIR/model.onnx, DIR/calibration.npy and step.json

Kinds:
  paddle            Paddle2ONNX's style: opset 11, names with '@', '.' and '/' (x, conv2d_0.w_0,
                    relu_0.tmp_0@RENAME@block0@0, save_infer_model/scale_0.tmp_0), batch norm, GELU spelled with Erf,
                    a MatMul + Add head
  tf2onnx           tf2onnx's style: opset 13, an NHWC input 'input_1:0' transposed to NCHW, names with ':0', ';' and
                    '/', a LayerNorm over the last axis spelled as ReduceMean/Sub/Pow/Sqrt/Div, Erf GELU
  channel-layernorm ConvNeXt's LayerNorm2d: a LayerNorm over the channel axis of an NCHW tensor, decomposed, and the
                    permute -> LayerNormalization(axis -1) -> permute form (opset 17)
  resize            one feature map resized by Resize in every mode (nearest with each coordinate transform and
                    rounding, linear, cubic) by 1.5, and downscaled to a given size, each its own output
  hostile-names     the paddle graph with names TensorFlow rejects: spaces, brackets, quotes, a leading dash or
                    digit, non-ASCII, ':' and '@', a 300-character name, and names that clash once made safe
  squeezenet        the ONNX model zoo's SqueezeNet: opset 10, fire modules, ceil-mode max-pools, a final 1x1 conv to
                    the classes, global average pooling and a Softmax over the channel axis of the 4-D NCHW tensor
  lrn               a Caffe-style stem (as the zoo's GoogLeNet/AlexNet): LRN nodes, ceil-mode max and average pools
"""

import argparse
import math
import os

import numpy as np


class Graph:
    """Nodes, initializers and the exporter's naming style."""

    def __init__(self, rng, style):
        self.rng, self.style = rng, style
        self.nodes, self.inits, self.count = [], [], {}

    HOSTILE = ("image [N,3,H,W]", "-lead", "1st", "x:0:1", "a b", "a_b", "conv #1 (\u03b4)", "tmp;x@y", "q'uote\"s",
               "tab\tname", "w" * 300, "back\\slash", "\u5377\u79ef/out")

    def _hostile(self, prefix):
        i = self._index("hostile")
        return f"{self.HOSTILE[i % len(self.HOSTILE)]}{'' if i < len(self.HOSTILE) else ' ' + str(i)}{prefix}"

    def _index(self, kind):
        self.count[kind] = self.count.get(kind, -1) + 1
        return self.count[kind]

    def weight(self, kind, array):
        from onnx import numpy_helper

        i = self._index("w_" + kind)
        name = {"paddle": f"{kind}_{i}.w_0", "tf2onnx": f"StatefulPartitionedCall/model/{kind}_{i}/ReadVariableOp:0",
                "hostile": self._hostile(" w")}.get(self.style, f"{kind}.{i}.weight")
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def const(self, array):
        return self.weight("const", np.asarray(array))

    def op(self, op_type, inputs, outputs=1, **attrs):
        from onnx import helper

        i = self._index(op_type)
        low = op_type.lower()
        if self.style == "paddle":
            node = f"p2o.{op_type}.{i}"
            outs = [f"{low}_{i}.tmp_{k}@RENAME@block0@{k}" for k in range(outputs)]
        elif self.style == "hostile":
            node = self._hostile(" node")
            outs = [self._hostile("") for _ in range(outputs)]
        elif self.style == "tf2onnx":
            node = f"StatefulPartitionedCall/model/{low}_{i}/{op_type}"
            outs = [f"{node};model/{low}_{i}/{op_type}__{k}:0" for k in range(outputs)]
        else:
            node = f"/{op_type}_{i}"
            outs = [f"/{op_type}_{i}_output_{k}" for k in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=node, **attrs))
        return outs[0] if outputs == 1 else outs

    def conv(self, x, cin, cout, k=3, stride=1, pad=None, group=1):
        pad = k // 2 if pad is None else pad
        w = self.weight("conv2d", self.rng.normal(0, math.sqrt(2.0 / (cin // group * k * k)),
                                                  (cout, cin // group, k, k)).astype(np.float32))
        b = self.weight("conv2d_bias", self.rng.normal(0, 0.1, cout).astype(np.float32))
        return self.op("Conv", [x, w, b], kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4, group=group)

    def batch_norm(self, x, c):
        rng = self.rng
        scale, bias = rng.uniform(0.5, 1.5, c), rng.normal(0, 0.1, c)
        mean, var = rng.normal(0, 0.1, c), rng.uniform(0.5, 1.5, c)
        params = [self.weight("batch_norm", a.astype(np.float32)) for a in (scale, bias, mean, var)]
        return self.op("BatchNormalization", [x] + params, epsilon=1e-5)

    def erf_gelu(self, x):
        """x * 0.5 * (1 + erf(x / sqrt(2))), as every exporter below opset 20 spells exact GELU."""
        scaled = self.op("Div", [x, self.const(np.float32(math.sqrt(2.0)))])
        erf = self.op("Erf", [scaled])
        shifted = self.op("Add", [erf, self.const(np.float32(1.0))])
        return self.op("Mul", [self.op("Mul", [x, shifted]), self.const(np.float32(0.5))])

    def layer_norm(self, x, axis, c, rank):
        """The decomposed LayerNorm of tf2onnx and of torch's LayerNorm2d: over one axis, with gamma and beta."""
        axes = [axis]
        mean = self.op("ReduceMean", [x], axes=axes, keepdims=1)
        centred = self.op("Sub", [x, mean])
        var = self.op("ReduceMean", [self.op("Pow", [centred, self.const(np.float32(2.0))])], axes=axes, keepdims=1)
        std = self.op("Sqrt", [self.op("Add", [var, self.const(np.float32(1e-6))])])
        normed = self.op("Div", [centred, std])
        shape = [1] * rank
        shape[axis] = c
        gamma = self.weight("layer_norm_scale", self.rng.uniform(0.5, 1.5, shape).astype(np.float32))
        beta = self.weight("layer_norm_bias", self.rng.normal(0, 0.1, shape).astype(np.float32))
        return self.op("Add", [self.op("Mul", [normed, gamma]), beta])

    def dense(self, x, cin, cout):
        w = self.weight("fc", self.rng.normal(0, math.sqrt(1.0 / cin), (cin, cout)).astype(np.float32))
        b = self.weight("fc_bias", self.rng.normal(0, 0.1, cout).astype(np.float32))
        return self.op("Add", [self.op("MatMul", [x, w]), b])

    def gap_flat(self, x):
        return self.op("Flatten", [self.op("GlobalAveragePool", [x])], axis=1)

    def fire(self, x, cin, squeeze, expand):
        s = self.op("Relu", [self.conv(x, cin, squeeze, k=1)])
        e1 = self.op("Relu", [self.conv(s, squeeze, expand, k=1)])
        e3 = self.op("Relu", [self.conv(s, squeeze, expand, k=3)])
        return self.op("Concat", [e1, e3], axis=1)


def paddle(g):
    x = "x" if g.style == "paddle" else "input image [N,3,H,W]"
    h = g.erf_gelu(g.batch_norm(g.conv(x, 3, 16, stride=2), 16))
    h = g.op("Relu", [g.conv(h, 16, 16)])
    h = g.erf_gelu(g.dense(g.gap_flat(h), 16, 32))
    logits = g.dense(h, 32, 10)
    out = "save_infer_model/scale_0.tmp_0" if g.style == "paddle" else "-scores:0 / \u03c3"
    g.nodes[-1].output[0] = out
    return 11, [(x, [1, 3, 32, 32])], [(out, [1, 10])], logits


def tf2onnx(g):
    x = "input_1:0"
    h = g.op("Transpose", [x], perm=[0, 3, 1, 2])
    h = g.op("Relu", [g.conv(h, 3, 16, stride=2)])
    h = g.conv(h, 16, 16)
    tokens = g.op("Transpose", [g.op("Reshape", [h, g.const(np.asarray([1, 16, 256], np.int64))])], perm=[0, 2, 1])
    h = g.erf_gelu(g.dense(g.layer_norm(tokens, 2, 16, 3), 16, 32))
    pooled = g.op("ReduceMean", [h], axes=[1], keepdims=0)
    out = g.dense(pooled, 32, 10)
    g.nodes[-1].output[0] = "Identity:0"
    return 13, [(x, [1, 32, 32, 3])], [("Identity:0", [1, 10])], out


def channel_layernorm(g):
    x = "input"
    h = g.conv(x, 3, 16, k=4, stride=4, pad=0)  # ConvNeXt's patchify stem
    h = g.layer_norm(h, 1, 16, 4)  # LayerNorm2d over the channels of NCHW
    h = g.conv(h, 16, 16, k=7, group=16)  # depthwise 7x7
    nhwc = g.op("Transpose", [h], perm=[0, 2, 3, 1])
    gamma = g.weight("ln", g.rng.uniform(0.5, 1.5, 16).astype(np.float32))
    beta = g.weight("ln_bias", g.rng.normal(0, 0.1, 16).astype(np.float32))
    normed = g.op("LayerNormalization", [nhwc, gamma, beta], axis=-1, epsilon=1e-6)
    mlp = g.dense(g.erf_gelu(g.dense(normed, 16, 32)), 32, 16)
    h = g.op("Add", [h, g.op("Transpose", [mlp], perm=[0, 3, 1, 2])])
    out = g.dense(g.gap_flat(h), 16, 10)
    g.nodes[-1].output[0] = "logits"
    return 17, [(x, [1, 3, 32, 32])], [("logits", [1, 10])], out


RESIZE_MODES = [
    ("nearest_asymmetric_floor", dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")),
    ("nearest_half_pixel_round", dict(mode="nearest", coordinate_transformation_mode="half_pixel",
                                      nearest_mode="round_prefer_floor")),
    ("nearest_align_corners", dict(mode="nearest", coordinate_transformation_mode="align_corners",
                                   nearest_mode="round_prefer_ceil")),
    ("nearest_tf_half_pixel", dict(mode="nearest", coordinate_transformation_mode="tf_half_pixel_for_nn",
                                   nearest_mode="ceil")),
    ("linear_half_pixel", dict(mode="linear", coordinate_transformation_mode="half_pixel")),
    ("linear_pytorch_half_pixel", dict(mode="linear", coordinate_transformation_mode="pytorch_half_pixel")),
    ("linear_align_corners", dict(mode="linear", coordinate_transformation_mode="align_corners")),
    ("linear_asymmetric", dict(mode="linear", coordinate_transformation_mode="asymmetric")),
    ("cubic_half_pixel", dict(mode="cubic", coordinate_transformation_mode="half_pixel", cubic_coeff_a=-0.75)),
    ("cubic_asymmetric", dict(mode="cubic", coordinate_transformation_mode="asymmetric", cubic_coeff_a=-0.5)),
]


def resize(g):
    x = "input"
    h = g.op("Relu", [g.conv(x, 3, 4, stride=4)])  # 8x8 feature map
    scales = g.const(np.asarray([1.0, 1.0, 1.5, 1.5], np.float32))
    outputs = []
    for name, attrs in RESIZE_MODES:
        up = g.op("Resize", [h, "", scales], **attrs)
        g.nodes[-1].output[0] = name
        outputs.append((name, [1, 4, 12, 12]))
    down = g.op("Resize", [h, "", "", g.const(np.asarray([1, 4, 5, 5], np.int64))], mode="linear",
                coordinate_transformation_mode="half_pixel")
    g.nodes[-1].output[0] = "linear_half_pixel_to_5x5"
    return 13, [(x, [1, 3, 32, 32])], outputs + [("linear_half_pixel_to_5x5", [1, 4, 5, 5])], down


def squeezenet(g):
    """SqueezeNet 1.1's layers and widths at 224x224, 1000 classes (random weights)."""
    x = "data_0"
    h = g.op("Relu", [g.conv(x, 3, 64, k=3, stride=2, pad=0)])
    cin = 64
    for stage in ((16, 64, 16, 64), (32, 128, 32, 128), (48, 192, 48, 192, 64, 256, 64, 256)):
        h = g.op("MaxPool", [h], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)
        for squeeze, expand in zip(stage[::2], stage[1::2]):
            h, cin = g.fire(h, cin, squeeze, expand), 2 * expand
    h = g.op("Dropout", [h], ratio=0.5)
    h = g.op("Relu", [g.conv(h, cin, 1000, k=1)])
    h = g.op("GlobalAveragePool", [h])
    out = g.op("Softmax", [h], axis=1)
    g.nodes[-1].output[0] = "softmaxout_1"
    return 10, [(x, [1, 3, 224, 224])], [("softmaxout_1", [1, 1000, 1, 1])], out


def lrn(g):
    x = "data_0"
    h = g.op("Relu", [g.conv(x, 3, 16, k=5, stride=2, pad=2)])
    h = g.op("MaxPool", [h], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)
    h = g.op("LRN", [h], size=5, alpha=1e-4, beta=0.75, bias=1.0)
    h = g.op("Relu", [g.conv(h, 16, 32, k=3)])
    h = g.op("LRN", [h], size=5, alpha=1e-4, beta=0.75, bias=1.0)
    h = g.op("AveragePool", [h], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)
    flat = g.op("Flatten", [h], axis=1)
    w = g.weight("fc", g.rng.normal(0, 0.05, (10, 32 * 4 * 4)).astype(np.float32))
    b = g.weight("fc_bias", g.rng.normal(0, 0.1, 10).astype(np.float32))
    out = g.op("Softmax", [g.op("Gemm", [flat, w, b], transB=1)], axis=1)
    g.nodes[-1].output[0] = "prob_1"
    return 10, [(x, [1, 3, 32, 32])], [("prob_1", [1, 10])], out


KINDS = {"paddle": (paddle, "paddle"), "hostile-names": (paddle, "hostile"), "tf2onnx": (tf2onnx, "tf2onnx"),
         "channel-layernorm": (channel_layernorm, "torch"), "resize": (resize, "torch"),
         "squeezenet": (squeezenet, "torch"), "lrn": (lrn, "torch")}
IR_VERSION = {10: 5, 11: 6, 13: 7, 17: 8}


def main():
    import onnx
    from onnx import helper

    p = argparse.ArgumentParser()
    p.add_argument("--kind", default="paddle", choices=sorted(KINDS))
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    build, style = KINDS[args.kind]
    g = Graph(np.random.default_rng(args.seed), style)
    opset, inputs, outputs, _ = build(g)
    graph = helper.make_graph(
        g.nodes, f"{args.kind}_sample",
        [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, s) for n, s in outputs], g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name={"paddle": "PaddlePaddle", "tf2onnx": "tf2onnx"}.get(style, "sample"),
                              ir_version=IR_VERSION[opset])
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, os.path.join(args.out, "model.onnx"))
    rng = np.random.default_rng(args.seed + 1)
    np.save(os.path.join(args.out, "calibration.npy"),
            rng.uniform(-1, 1, [16] + inputs[0][1][1:]).astype(np.float32))
    from common import step_done

    step_done(args.out, ["model.onnx", "calibration.npy"], kind=args.kind, opset=opset, producer=style,
              inputs=[n for n, _ in inputs], outputs=[n for n, _ in outputs], nodes=len(g.nodes),
              ops=sorted({n.op_type for n in g.nodes}))


if __name__ == "__main__":
    main()
