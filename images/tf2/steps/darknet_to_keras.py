"""Build a tf.keras model from a Darknet .cfg and its .weights, and save it as Keras HDF5.

    darknet_to_keras.py --input MODEL.cfg --weights MODEL.weights --out DIR

Writes DIR/model.h5: one NHWC float32 input named "image" of shape (None, height, width, channels), pixels
already scaled to 0..1 (Darknet's own letterboxing and /255 are the caller's business); one output per [yolo]
section, named "yolo_<index>", holding the raw (not yet decoded) feature map of the layer before it. A cfg
without [yolo] sections has its last layer as its one output.

Sections: [net]/[network], [convolutional], [maxpool], [route], [shortcut], [upsample], [yolo].
The model uses stock Keras layers only (no Lambda), so it loads without custom objects and also converts to
TF.js layers; the only exception is a [maxpool] whose Darknet padding neither 'same' nor 'valid' reproduces
(not in the usual YOLO cfgs), which pads with -FLT_MAX through tf.pad.

Darknet semantics followed (the parser and loader are written from the format, not taken from Darknet):
  * conv: pad=1 means padding = size//2 (it overrides padding=N); output = (in + 2*padding - size)//stride + 1,
    input zero-padded by `padding` on the top/left (the bottom/right as far as the windows reach): Keras
    'same' when stride 1, odd size and padding = size//2; otherwise ZeroPadding2D + a 'valid' Conv2D.
  * batch norm: Keras BatchNormalization(epsilon=1e-5), i.e. (x - mean) / sqrt(var + 1e-5). Darknet's GPU
    (cuDNN) path uses the same; its CPU path divides by sqrt(var) + 1e-6, a relative difference of ~5e-6/var.
  * maxpool: padding defaults to size-1, output = (in + padding - size)//stride + 1, windows start at
    -padding//2 and ignore pixels outside the input.
  * route groups/group_id: each input's channels split into `groups` equal parts, part `group_id` taken.
  * upsample: nearest neighbour by an integer stride; shortcut: elementwise sum, then its activation.
  * .weights: int32 major, minor, revision; `seen` int64 when major*10+minor >= 2 (and both < 1000), else int32;
    then float32, per [convolutional] in cfg order: bias, then (batch_normalize) scale, mean, variance,
    then the kernel as [filters][channels/groups][size][size]. The file must be consumed exactly.
"""

import argparse
import os
import struct
from collections import Counter

import numpy as np

from common import first_line, reject, step_done

SUPPORTED = ("net", "network", "convolutional", "maxpool", "route", "shortcut", "upsample", "yolo")
ACTIVATIONS = ("linear", "leaky", "relu", "mish", "logistic", "swish", "tanh")
KERAS_ACTIVATION = {"relu": "relu", "mish": "mish", "logistic": "sigmoid", "swish": "swish", "tanh": "tanh"}
BN_EPSILON = 1e-5
LEAKY_ALPHA = 0.1
FLT_LOWEST = float(np.finfo(np.float32).min)  # Darknet's -FLT_MAX, what its maxpool sees outside the input
# options that change what a layer computes (or what it reads from .weights), with the only value supported
UNSUPPORTED_OPTIONS = {
    "convolutional": {"dilation": "1", "dontload": "0", "dontloadscales": "0", "binary": "0", "xnor": "0",
                      "antialiasing": "0", "deform": "0", "share_index": None},
    "maxpool": {"maxpool_depth": "0", "antialiasing": "0"},
    "shortcut": {"weights_type": "none"},
    "upsample": {"scale": "1"},
}


class Section:
    """One [type] block of a cfg: its options keep the line they came from, for error messages."""

    def __init__(self, cfg, kind, line):
        self.cfg, self.kind, self.line, self.options = cfg, kind, line, {}

    def where(self, key=None):
        line = self.options[key][1] if key in self.options else self.line
        return f"{self.cfg}: line {line}: [{self.kind}]"

    def has(self, key):
        return key in self.options

    def text(self, key, default=None):
        return self.options[key][0] if key in self.options else default

    def _raw(self, key, default):
        """(text, True) when the cfg sets the option; (default, False) otherwise (a required one is rejected)."""
        if key in self.options:
            return self.options[key][0], True
        if default is None:
            reject(f"{self.where()} needs {key}=")
        return default, False

    def int(self, key, default=None, minimum=None):
        value, given = self._raw(key, default)
        if not given:
            return value
        try:
            number = int(value)
        except ValueError:
            reject(f"{self.where(key)} {key}={value} is not an integer")
        if minimum is not None and number < minimum:
            reject(f"{self.where(key)} {key}={value} must be at least {minimum}")
        return number

    def ints(self, key, default=None):
        value, given = self._raw(key, default)
        if not given:
            return value
        try:
            return [int(v) for v in value.split(",") if v.strip()]
        except ValueError:
            reject(f"{self.where(key)} {key}={value} is not a comma-separated list of integers")

    def floats(self, key, default):
        value, given = self._raw(key, default)
        if not given:
            return value
        try:
            return [float(v) for v in value.split(",") if v.strip()]
        except ValueError:
            reject(f"{self.where(key)} {key}={value} is not a comma-separated list of numbers")


def read_cfg(path):
    """The sections of a Darknet .cfg, [net] first. Comments (#, ;) and blank lines are skipped."""
    try:
        with open(path, encoding="utf-8-sig") as fh:  # tolerate a BOM
            lines = fh.read().splitlines()
    except UnicodeDecodeError:
        reject(f"{path}: not a Darknet .cfg (not a UTF-8 text file)")
    except OSError as exc:
        reject(f"{path}: cannot read ({exc.strerror or first_line(exc)})")
    sections = []
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        for mark in ("#", ";"):  # whole-line comments, and (more lenient than Darknet) trailing ones
            line = line.split(mark, 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            if not line.endswith("]") or len(line) < 3:
                reject(f"{path}: line {number}: malformed section header '{line}'")
            sections.append(Section(path, line[1:-1].strip().lower(), number))
            continue
        if "=" not in line:
            reject(f"{path}: line {number}: expected key=value, found '{line}'")
        if not sections:
            reject(f"{path}: line {number}: option '{line}' before the first [section]")
        key, value = (part.strip() for part in line.split("=", 1))
        sections[-1].options[key.lower()] = (value, number)
    if not sections:
        reject(f"{path}: no sections: not a Darknet .cfg")
    if sections[0].kind not in ("net", "network"):
        reject(f"{path}: line {sections[0].line}: the first section must be [net] or [network], "
               f"not [{sections[0].kind}]")
    for section in sections[1:]:
        if section.kind not in SUPPORTED or section.kind in ("net", "network"):
            what = "a second" if section.kind in ("net", "network") else "unknown layer type"
            reject(f"{path}: line {section.line}: {what} [{section.kind}]; supported: "
                   f"{', '.join('[' + s + ']' for s in SUPPORTED[2:])} after one [net]")
    if len(sections) == 1:
        reject(f"{path}: no layers after [{sections[0].kind}]")
    return sections


class Layer:
    """A planned layer: its index (as cfg route/shortcut indices count), input indices (-1 = the image),
    output shape (h, w, c), the floats it reads from .weights, and its settings."""

    def __init__(self, section, index, inputs, shape, floats=0, **params):
        self.section, self.index, self.inputs, self.shape = section, index, inputs, shape
        self.kind, self.floats, self.params = section.kind, floats, params


def _index(section, key, value, current):
    index = current + value if value < 0 else value
    if not 0 <= index < current:
        reject(f"{section.where(key)} {key}={section.text(key)}: layer {value} is out of range "
               f"(this is layer {current}; it can refer to layers 0..{current - 1})")
    return index


def _activation(section, default):
    name = section.text("activation", default).lower()
    if name not in ACTIVATIONS:
        reject(f"{section.where('activation')} activation={name} is not supported; supported: "
               f"{', '.join(ACTIVATIONS)}")
    return name


def _check_options(section):
    for key, only in UNSUPPORTED_OPTIONS.get(section.kind, {}).items():
        if section.has(key) and (only is None or section.text(key).lower() != only):
            reject(f"{section.where(key)} {key}={section.text(key)} is not supported")


def pool_axis(n, size, stride, padding):
    """Darknet maxpool along one axis -> (out, pad_before, pad_after) of an equivalent explicit padding."""
    out = (n + padding - size) // stride + 1
    before = padding // 2
    after = max((out - 1) * stride + size - n - before, 0)
    return out, before, after


def plan(sections):
    """Shapes, wiring and .weights float counts of every layer, checking what Darknet would refuse."""
    net = sections[0]
    height, width = net.int("height", minimum=1), net.int("width", minimum=1)
    channels = net.int("channels", 3, minimum=1)
    layers = []
    for index, section in enumerate(sections[1:]):
        _check_options(section)
        prev = index - 1
        h, w, c = layers[prev].shape if layers else (height, width, channels)
        kind = section.kind
        if kind == "convolutional":
            filters = section.int("filters", 1, minimum=1)
            size = section.int("size", 1, minimum=1)
            stride = section.int("stride", 1, minimum=1)
            sy, sx = section.int("stride_y", stride, minimum=1), section.int("stride_x", stride, minimum=1)
            padding = section.int("padding", 0, minimum=0)
            if section.int("pad", 0, minimum=0):
                padding = size // 2
            groups = section.int("groups", 1, minimum=1)
            bn = section.int("batch_normalize", 0, minimum=0) != 0
            act = _activation(section, "logistic")
            if c % groups or filters % groups:
                reject(f"{section.where('groups')} groups={groups} must divide both the input channels ({c}) "
                       f"and filters={filters}")
            oh, ow = (h + 2 * padding - size) // sy + 1, (w + 2 * padding - size) // sx + 1
            if oh < 1 or ow < 1:
                reject(f"{section.where()} a {size}x{size} kernel with padding {padding} does not fit the "
                       f"{h}x{w} input")
            floats = filters * (4 if bn else 1) + filters * (c // groups) * size * size
            layers.append(Layer(section, index, [prev], (oh, ow, filters), floats, filters=filters, size=size,
                                strides=(sy, sx), padding=padding, groups=groups, bn=bn, activation=act,
                                in_channels=c))
        elif kind == "maxpool":
            stride = section.int("stride", 1, minimum=1)
            sy, sx = section.int("stride_y", stride, minimum=1), section.int("stride_x", stride, minimum=1)
            size = section.int("size", stride, minimum=1)
            padding = section.int("padding", size - 1, minimum=0)
            gy, gx = pool_axis(h, size, sy, padding), pool_axis(w, size, sx, padding)
            if gy[0] < 1 or gx[0] < 1:
                reject(f"{section.where()} a {size}x{size} window does not fit the {h}x{w} input")
            layers.append(Layer(section, index, [prev], (gy[0], gx[0], c), size=size, strides=(sy, sx),
                                padding=padding, geometry=(gy, gx), in_hw=(h, w)))
        elif kind == "route":
            refs = section.ints("layers")
            if not refs:
                reject(f"{section.where('layers')} layers= is empty")
            inputs = [_index(section, "layers", r, index) for r in refs]
            groups = section.int("groups", 1, minimum=1)
            group_id = section.int("group_id", 0, minimum=0)
            if group_id >= groups:
                reject(f"{section.where('group_id')} group_id={group_id} must be below groups={groups}")
            shapes = [layers[i].shape for i in inputs]
            if any(s[:2] != shapes[0][:2] for s in shapes):
                reject(f"{section.where('layers')} layers={section.text('layers')} joins maps of different sizes "
                       f"({', '.join(f'{s[0]}x{s[1]}' for s in shapes)})")
            if any(s[2] % groups for s in shapes):
                reject(f"{section.where('groups')} groups={groups} does not divide the channels of "
                       f"layers {', '.join(str(i) for i in inputs)} ({', '.join(str(s[2]) for s in shapes)})")
            out_c = sum(s[2] // groups for s in shapes)
            layers.append(Layer(section, index, inputs, (*shapes[0][:2], out_c), groups=groups, group_id=group_id))
        elif kind == "shortcut":
            refs = section.ints("from")
            if not refs:
                reject(f"{section.where('from')} from= is empty")
            inputs = [prev] + [_index(section, "from", r, index) for r in refs]
            if index == 0:
                reject(f"{section.where()} a [shortcut] cannot be the first layer")
            for i in inputs[1:]:
                if layers[i].shape != (h, w, c):
                    reject(f"{section.where('from')} from={section.text('from')}: layer {i} is "
                           f"{'x'.join(map(str, layers[i].shape))}, the previous layer {h}x{w}x{c}; "
                           f"only equal shapes are supported")
            layers.append(Layer(section, index, inputs, (h, w, c), activation=_activation(section, "linear")))
        elif kind == "upsample":
            stride = section.int("stride", 2, minimum=1)
            layers.append(Layer(section, index, [prev], (h * stride, w * stride, c), stride=stride))
        elif kind == "yolo":
            if index == 0:
                reject(f"{section.where()} a [yolo] cannot be the first layer")
            classes = section.int("classes", 20, minimum=1)
            num = section.int("num", 1, minimum=1)
            mask = section.ints("mask", list(range(num)))
            anchors = section.floats("anchors", [])
            if len(anchors) % 2:
                reject(f"{section.where('anchors')} anchors= holds an odd number of values ({len(anchors)})")
            pairs = [anchors[i:i + 2] for i in range(0, len(anchors), 2)]
            if pairs and any(not 0 <= m < len(pairs) for m in mask):
                reject(f"{section.where('mask')} mask={section.text('mask')} refers past the {len(pairs)} anchors")
            if c != len(mask) * (classes + 5):
                reject(f"{section.where()} the previous layer has {c} channels, but {len(mask)} masks x "
                       f"(classes={classes} + 5) needs {len(mask) * (classes + 5)} (filters= of the conv before)")
            info = {"mask": mask, "anchors": [pairs[m] for m in mask] if pairs else [], "classes": classes,
                    "num": num}
            for extra in ("scale_x_y", "new_coords"):
                if section.has(extra):
                    info[extra] = section.floats(extra, [])[0] if section.text(extra) else None
            layers.append(Layer(section, index, [prev], (h, w, c), head=info))
    return (height, width, channels), layers


def read_weights(path, need):
    """(header, float32 array of exactly `need` values), or a one-line reject."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        reject(f"{path}: cannot read ({exc.strerror or first_line(exc)})")
    if len(data) < 12:
        reject(f"{path}: too short for a Darknet .weights header ({len(data)} bytes)")
    major, minor, revision = struct.unpack_from("<3i", data, 0)
    wide = (major * 10 + minor) >= 2 and major < 1000 and minor < 1000
    start = 20 if wide else 16
    if len(data) < start:
        reject(f"{path}: too short for a Darknet .weights header ({len(data)} bytes)")
    seen = struct.unpack_from("<q" if wide else "<i", data, 12)[0]
    body = len(data) - start
    if body < need * 4:
        have = body // 4
        reject(f"{path}: too short: the cfg needs {need} floats after the header, the file holds {have} "
               f"({need - have} missing)")
    if body > need * 4:
        extra = body - need * 4
        amount = f"{extra // 4} floats" if extra % 4 == 0 else f"{extra} bytes"
        reject(f"{path}: too long: {amount} left over after the last layer (does the cfg match?)")
    floats = np.frombuffer(data, dtype="<f4", count=need, offset=start).astype(np.float32)
    header = {"major": major, "minor": minor, "revision": revision, "seen": seen}
    return header, floats


def build(shape, layers, floats):
    """The Keras model, with each [convolutional] taking its floats from `floats` in cfg order."""
    import tensorflow as tf

    L = tf.keras.layers
    image = L.Input(shape, name="image", dtype="float32")
    tensors = {-1: image}
    heads, pos = [], 0

    def take(count):
        nonlocal pos
        chunk = floats[pos:pos + count]
        pos += count
        return chunk

    def activate(x, name, i):
        if name == "linear":
            return x
        if name == "leaky":
            return L.LeakyReLU(alpha=LEAKY_ALPHA, name=f"leaky_{i}")(x)
        return L.Activation(KERAS_ACTIVATION[name], name=f"{name}_{i}")(x)

    for layer in layers:
        i, p = layer.index, layer.params
        x = tensors[layer.inputs[0]]
        if layer.kind == "convolutional":
            n, k, groups, c = p["filters"], p["size"], p["groups"], p["in_channels"]
            bias = take(n)
            if p["bn"]:
                gamma, mean, var = take(n), take(n), take(n)
            kernel = take(n * (c // groups) * k * k).reshape(n, c // groups, k, k)
            if p["strides"] == (1, 1) and k % 2 == 1 and p["padding"] == k // 2:
                mode = "same"
            else:
                mode = "valid"
                if p["padding"]:
                    x = L.ZeroPadding2D(p["padding"], name=f"pad_{i}")(x)
            if groups > 1 and groups == c == n:
                conv = L.DepthwiseConv2D(k, p["strides"], mode, use_bias=not p["bn"], name=f"conv_{i}")
                weights = [kernel.transpose(2, 3, 0, 1)]  # (k, k, channels, 1)
            else:
                conv = L.Conv2D(n, k, p["strides"], mode, groups=groups, use_bias=not p["bn"], name=f"conv_{i}")
                weights = [kernel.transpose(2, 3, 1, 0)]  # (k, k, channels/groups, filters)
            x = conv(x)
            conv.set_weights(weights if p["bn"] else weights + [bias])
            if p["bn"]:
                norm = L.BatchNormalization(epsilon=BN_EPSILON, name=f"bn_{i}")
                x = norm(x)
                norm.set_weights([gamma, bias, mean, var])
            x = activate(x, p["activation"], i)
        elif layer.kind == "maxpool":
            (oh, top, bottom), (ow, left, right) = p["geometry"]
            size, strides, (h, w) = p["size"], p["strides"], p["in_hw"]
            same = [(-(-n // s), max((-(-n // s) - 1) * s + size - n, 0) // 2) for n, s in zip((h, w), strides)]
            valid = [((n - size) // s + 1 if n >= size else 0, 0) for n, s in zip((h, w), strides)]
            got = [(oh, top), (ow, left)]
            if got == valid:
                x = L.MaxPooling2D(size, strides, "valid", name=f"maxpool_{i}")(x)
            elif got == same:
                x = L.MaxPooling2D(size, strides, "same", name=f"maxpool_{i}")(x)
            else:  # Darknet ignores pixels outside the input: pad with its -FLT_MAX
                x = tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]], constant_values=FLT_LOWEST)
                x = L.MaxPooling2D(size, strides, "valid", name=f"maxpool_{i}")(x)
        elif layer.kind == "route":
            parts = []
            for j in layer.inputs:
                t = tensors[j]
                if p["groups"] > 1:  # channel slice group_id of groups, with plain Keras layers
                    h, w, c = layers[j].shape
                    part = c // p["groups"]
                    start = p["group_id"] * part
                    t = L.Reshape((h * w, c, 1), name=f"route_{i}_from_{j}_flat")(t)
                    t = L.Cropping2D(((0, 0), (start, c - start - part)), name=f"route_{i}_from_{j}_slice")(t)
                    t = L.Reshape((h, w, part), name=f"route_{i}_from_{j}_group")(t)
                parts.append(t)
            x = parts[0] if len(parts) == 1 else L.Concatenate(axis=-1, name=f"route_{i}")(parts)
        elif layer.kind == "shortcut":
            x = L.Add(name=f"shortcut_{i}")([tensors[j] for j in layer.inputs])
            x = activate(x, p["activation"], i)
        elif layer.kind == "upsample":
            if p["stride"] > 1:
                x = L.UpSampling2D(p["stride"], interpolation="nearest", name=f"upsample_{i}")(x)
        elif layer.kind == "yolo":
            heads.append(L.Activation("linear", name=f"yolo_{i}")(x))
        tensors[i] = x
    assert pos == len(floats), (pos, len(floats))
    outputs = heads or [tensors[layers[-1].index]]
    return tf.keras.Model(image, outputs if len(outputs) > 1 else outputs[0], name="darknet")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--input", required=True, help="the Darknet .cfg")
    p.add_argument("--weights", required=True, help="the Darknet .weights")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    sections = read_cfg(args.input)
    shape, layers = plan(sections)
    need = sum(layer.floats for layer in layers)
    header, floats = read_weights(args.weights, need)
    try:
        model = build(shape, layers, floats)
    except Exception as exc:  # a geometry the checks above missed: still one line
        reject(f"{args.input}: cannot build the Keras model ({first_line(exc)})")
    model.save(os.path.join(args.out, "model.h5"), save_format="h5")
    heads = [dict(name=f"yolo_{layer.index}", layer=layer.index, line=layer.section.line, **layer.params["head"])
             for layer in layers if layer.kind == "yolo"]
    step_done(args.out, ["model.h5"],
              layers=dict(Counter(layer.kind for layer in layers)),
              inputs=[[None, *shape]],
              outputs=[{"name": n, "shape": list(t.shape)} for n, t in zip(model.output_names, model.outputs)],
              weights_floats=need, header=header, yolo=heads, batchnorm_epsilon=BN_EPSILON,
              parameters=int(model.count_params()))


if __name__ == "__main__":
    main()
