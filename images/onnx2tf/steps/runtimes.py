"""Runtimes of the onnx2tf stack (onnxruntime, the TFLite interpreter, SavedModel signatures) and the layout
bridge between an ONNX (NCHW) model and its onnx2tf conversion (NHWC): inputs are transposed to the converted
model's shapes, outputs transposed back to the reference's."""

import os

import numpy as np

from common import first_line, reject


def to_last(rank):
    """NCHW -> NHWC permutation for a tensor of this rank (channels from axis 1 to the end)."""
    return (0,) + tuple(range(2, rank)) + (1,)


def to_first(rank):
    """NHWC -> NCHW."""
    return (0, rank - 1) + tuple(range(1, rank - 1))


class Spec:
    def __init__(self, name, shape, dtype):
        self.name, self.dtype = name, np.dtype(dtype)
        # onnxruntime gives ints or dimension names; TFLite numpy ints (-1: dynamic)
        self.shape = [int(d) if isinstance(d, (int, np.integer)) and d > 0 else None for d in shape]

    def concrete(self):
        return [1 if d is None else d for d in self.shape]

    def fits(self, shape):
        return len(shape) == len(self.shape) and all(d is None or d == s for d, s in zip(self.shape, shape))

    def to_json(self):
        return {"name": self.name, "shape": self.shape, "dtype": self.dtype.name}


class OnnxModel:
    def __init__(self, path):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            reject(f"{os.path.basename(path)}: onnxruntime cannot load it ({first_line(exc)})")
        types = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(int64)": "int64",
                 "tensor(int32)": "int32", "tensor(bool)": "bool", "tensor(uint8)": "uint8", "tensor(int8)": "int8",
                 "tensor(float16)": "float16"}
        self.inputs = [Spec(i.name, i.shape, types.get(i.type, "float32")) for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds):
        values = self.session.run(None, {s.name: feeds[s.name] for s in self.inputs})
        return list(zip(self.output_names, values))


def _quantized(d):
    return np.dtype(d["dtype"]) in (np.int8, np.uint8, np.int16) and d["quantization"][0] != 0


class TFLiteModel:
    """The TFLite interpreter of this stack (TF 2.19, matching the converter); int8/uint8 inputs and outputs are
    (de)quantized so comparisons are in float. Tensors are named by the model's signature when it has one (onnx2tf
    copies the ONNX input and output names there)."""

    def __init__(self, path):
        import tensorflow as tf

        self.path = path
        try:
            self.interp = tf.lite.Interpreter(model_path=path, num_threads=os.cpu_count())
        except Exception as exc:
            reject(f"{os.path.basename(path)}: cannot load TFLite model ({first_line(exc)})")
        signatures = self.interp.get_signature_list()
        self.runner = None
        if len(signatures) == 1:
            key = next(iter(signatures))
            self.runner = self.interp.get_signature_runner(key)
            ins, outs = self.runner.get_input_details(), self.runner.get_output_details()
            self.in_details = [dict(ins[n], name=n) for n in signatures[key]["inputs"]]
            self.out_details = [dict(outs[n], name=n) for n in signatures[key]["outputs"]]
        else:
            self.interp.allocate_tensors()
            self.in_details = self.interp.get_input_details()
            self.out_details = self.interp.get_output_details()
        self.inputs = [Spec(d["name"], list(d.get("shape_signature", d["shape"])),
                            np.float32 if _quantized(d) else d["dtype"]) for d in self.in_details]
        self.output_names = [d["name"] for d in self.out_details]

    def quant_scales(self):
        return {d["name"]: float(d["quantization"][0]) for d in self.out_details if _quantized(d)}

    def op_counts(self):
        """Operators of the model as stored (the XNNPACK delegate would hide the ops it takes over)."""
        import tensorflow as tf

        plain = tf.lite.Interpreter(model_path=self.path, experimental_op_resolver_type=(
            tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
        counts = {}
        for op in plain._get_ops_details():
            counts[op["op_name"]] = counts.get(op["op_name"], 0) + 1
        return counts

    def run(self, feeds):
        quantized = {}
        for d, spec in zip(self.in_details, self.inputs):
            x = np.asarray(feeds[spec.name])
            if _quantized(d):
                scale, zero = d["quantization"]
                info = np.iinfo(d["dtype"])
                x = np.clip(np.round(x.astype(np.float64) / scale + zero), info.min, info.max)
            quantized[d["name"]] = x.astype(d["dtype"])
        if self.runner is not None:
            result = self.runner(**quantized)
            raw = [(d, result[d["name"]]) for d in self.out_details]
        else:
            for d in self.in_details:
                if list(d["shape"]) != list(quantized[d["name"]].shape):
                    self.interp.resize_tensor_input(d["index"], quantized[d["name"]].shape)
            self.interp.allocate_tensors()
            for d in self.in_details:
                self.interp.set_tensor(d["index"], quantized[d["name"]])
            self.interp.invoke()
            raw = [(d, self.interp.get_tensor(d["index"])) for d in self.out_details]
        out = []
        for d, v in raw:
            if _quantized(d):
                scale, zero = d["quantization"]
                v = ((v.astype(np.float64) - zero) * scale).astype(np.float32)
            out.append((d["name"], v))
        return out


class SavedModel:
    def __init__(self, path):
        import tensorflow as tf

        try:
            loaded = tf.saved_model.load(path)
            self.fn = loaded.signatures["serving_default"]
        except Exception as exc:
            reject(f"{os.path.basename(path)}: cannot load SavedModel signature ({first_line(exc)})")
        self.loaded = loaded
        _, kwargs = self.fn.structured_input_signature
        self.inputs = [Spec(n, [d if d is not None else -1 for d in s.shape.as_list()], s.dtype.as_numpy_dtype)
                       for n, s in sorted(kwargs.items())]
        self.output_names = sorted(self.fn.structured_outputs)

    def run(self, feeds):
        import tensorflow as tf

        out = self.fn(**{s.name: tf.constant(feeds[s.name]) for s in self.inputs})
        return [(n, out[n].numpy()) for n in self.output_names]


LOADERS = {"onnx": OnnxModel, "tflite": TFLiteModel, "tf_saved_model": SavedModel}


def load(fmt, path):
    return LOADERS[fmt](path)


def _key(name):
    """Names onnx2tf gives converted tensors ('serving_default_input_0:0', 'input_0') compared plainly."""
    name = name.split(":")[0]
    for prefix in ("serving_default_",):
        if name.startswith(prefix):
            name = name[len(prefix):]
    return name.replace("/", "_").replace(".", "_")


def match(names, wanted):
    """Map each wanted name to one of `names`: by (normalized) name when all match, else by order."""
    by_key = {_key(n): n for n in names}
    if all(_key(w) in by_key for w in wanted):
        return {w: by_key[_key(w)] for w in wanted}
    if len(names) == len(wanted):
        return dict(zip(wanted, names))
    return None


def adapt_inputs(specs, given):
    """Feeds for a converted model from reference inputs {name: array} (ONNX layout): same shape, or the NCHW ->
    NHWC transposition of it. Returns (feeds, layout record)."""
    pairs = match([s.name for s in specs], list(given))
    if pairs is None:
        reject(f"the converted model has {len(specs)} input(s), the reference {len(given)}")
    by_name = {s.name: s for s in specs}
    feeds, layout = {}, {}
    for ref_name, arr in given.items():
        spec = by_name[pairs[ref_name]]
        if spec.fits(arr.shape):
            feeds[spec.name], layout[ref_name] = arr, "same"
        elif arr.ndim >= 3 and spec.fits(arr.transpose(to_last(arr.ndim)).shape):
            feeds[spec.name] = np.ascontiguousarray(arr.transpose(to_last(arr.ndim)))
            layout[ref_name] = "NCHW->NHWC" if arr.ndim == 4 else f"transposed {list(to_last(arr.ndim))}"
        else:
            reject(f"reference input '{ref_name}' {list(arr.shape)} fits neither the converted input "
                   f"'{spec.name}' {spec.shape} nor its NHWC transposition")
        feeds[spec.name] = feeds[spec.name].astype(spec.dtype)
    return feeds, layout


def adapt_outputs(got, reference):
    """Converted outputs [(name, array)] renamed and transposed back to the reference's {name: array}.
    When both the plain and the transposed layout fit a shape, the one closer to the reference wins."""
    got = dict(got)
    pairs = match(list(got), list(reference))
    if pairs is None:  # let the compare step report the count mismatch
        return got, {}
    result, layout = {}, {}
    for ref_name, ref in reference.items():
        g = np.asarray(got[pairs[ref_name]])
        candidates = []
        if g.shape == ref.shape:
            candidates.append(("same", g))
        if g.ndim >= 3:
            back = g.transpose(to_first(g.ndim))
            if back.shape == ref.shape:
                candidates.append(("NHWC->NCHW" if g.ndim == 4 else f"transposed {list(to_first(g.ndim))}", back))
        if not candidates:
            result[ref_name], layout[ref_name] = g, "shape differs"
            continue
        best = min(candidates, key=lambda c: float(np.max(np.abs(c[1].astype(np.float64) - ref))) if ref.size else 0)
        layout[ref_name], result[ref_name] = best[0], np.ascontiguousarray(best[1])
    return result, layout


def random_feeds(specs, seed):
    rng = np.random.default_rng(seed)
    feeds = {}
    for s in specs:
        if s.dtype.kind == "f":
            feeds[s.name] = rng.uniform(-1.0, 1.0, s.concrete()).astype(s.dtype)
        elif s.dtype.kind in "iu":
            feeds[s.name] = rng.integers(0, 10, s.concrete()).astype(s.dtype)
        else:
            feeds[s.name] = rng.random(s.concrete()) < 0.5
    return feeds


