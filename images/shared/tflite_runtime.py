"""The TFLite interpreter as verification uses it, in every stack that has one (tf2, onnx2tf, keras3): LiteRT's
interpreter (ai-edge-litert) where the stack has it, else tf.lite's (deprecated, the same engine). Quantized
inputs and outputs are (de)quantized so comparisons are in float, tensors are named by the model's signature when
it has one (onnx2tf copies the ONNX names there), and the logits (the tensor feeding an output's final SOFTMAX,
LOGISTIC, ARG_MAX or LOG_SOFTMAX) are read back, since the interpreter keeps every tensor."""

import os

import numpy as np

from common import Spec, first_line, reject

ACTIVATIONS = ("SOFTMAX", "LOGISTIC", "ARG_MAX", "LOG_SOFTMAX")
FLEX_HINT = ("pass --allow_flex_ops to keep them (the app must then link the Flex delegate, "
             "tensorflow-lite-select-tf-ops)")
PASS_THROUGH = ("RESHAPE", "SQUEEZE", "DEQUANTIZE", "QUANTIZE")


def quantized(d):
    return np.dtype(d["dtype"]) in (np.int8, np.uint8, np.int16) and d["quantization"][0] != 0


def quantize(x, d):
    dtype = np.dtype(d["dtype"])
    if not quantized(d):
        return np.asarray(x).astype(dtype)
    scale, zero = d["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(np.asarray(x, np.float64) / scale + zero), info.min, info.max).astype(dtype)


def dequantize(v, d):
    if not quantized(d):
        return np.asarray(v)
    scale, zero = d["quantization"]
    return ((np.asarray(v, np.float64) - zero) * scale).astype(np.float32)


def interpreter_module():
    """(the module holding Interpreter and OpResolverType, its name): LiteRT's where installed, else tf.lite."""
    try:
        from ai_edge_litert import interpreter

        return interpreter, "ai_edge_litert"
    except ImportError:
        import tensorflow as tf

        return _TfLite(tf), "tf.lite"


class _TfLite:
    """tf.lite's Interpreter and OpResolverType under the names LiteRT's module gives them."""

    def __init__(self, tf):
        self.Interpreter = tf.lite.Interpreter
        self.OpResolverType = tf.lite.experimental.OpResolverType


def op_counts(path):
    """Operators of the model as stored (the XNNPACK delegate would hide the ops it takes over)."""
    api, _ = interpreter_module()
    plain = api.Interpreter(model_path=path, experimental_op_resolver_type=(
        api.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
    counts = {}
    for op in plain._get_ops_details():
        counts[op["op_name"]] = counts.get(op["op_name"], 0) + 1
    return counts


def op_set(counts):
    """An op histogram split as a device sees it: TFLite builtins, custom ops (e.g. TFLite_Detection_PostProcess,
    which the app registers), and Flex ops (TF Select: TensorFlow kernels, only with the Flex delegate)."""
    split = {"builtin": {}, "custom": {}, "flex": {}}
    for name, n in sorted(counts.items()):
        kind = "flex" if name.startswith("Flex") else "builtin" if name.replace("_", "").isalnum() and \
            name == name.upper() else "custom"
        split[kind][name] = n
    return split


def flex_delegate():
    """Make the Flex delegate available to interpreters made after this (TensorFlow's library carries it, and
    LiteRT's interpreter picks it up once it is loaded); False where the stack has no TensorFlow."""
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        return False
    return True


class TFLiteModel:
    def __init__(self, path, logits=True):
        api, self.interpreter_name = interpreter_module()
        self.path, self.flex_delegate = path, False
        if op_set(self.op_counts())["flex"]:  # allowed by the conversion (--allow_flex_ops): run it as the app will
            self.flex_delegate = flex_delegate()
        try:
            self.interp = api.Interpreter(model_path=path, num_threads=os.cpu_count(),
                                          experimental_preserve_all_tensors=logits)
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
                            np.float32 if quantized(d) else d["dtype"]) for d in self.in_details]
        self.output_names = [d["name"] for d in self.out_details]
        self.logit_ops, self._logit_tensors = ({}, {}) if not logits else self._find_logits()

    def _find_logits(self):
        """{output: op type} and {output: tensor details} for outputs that end in a saturating activation."""
        try:
            ops = self.interp._get_ops_details()
            tensors = {d["index"]: d for d in self.interp.get_tensor_details()}
        except Exception:  # older interpreters or several subgraphs: no logits
            return {}, {}
        producer = {t: op for op in ops for t in op["outputs"]}
        names, found = {}, {}
        for d in self.out_details:
            op = producer.get(d["index"])
            while op is not None and op["op_name"] in PASS_THROUGH and len(op["inputs"]):
                op = producer.get(op["inputs"][0])
            if op is not None and op["op_name"] in ACTIVATIONS and op["inputs"][0] in tensors:
                names[d["name"]] = op["op_name"]
                found[d["name"]] = tensors[op["inputs"][0]]
        return names, found

    def quant_scales(self):
        return {d["name"]: float(d["quantization"][0]) for d in self.out_details if quantized(d)}

    def details(self):
        def pack(d):
            scale, zero = d["quantization"]
            return {"shape": d["shape"], "dtype": np.dtype(d["dtype"]).name, "scale": scale, "zero_point": zero}

        return {"inputs": {d["name"]: pack(d) for d in self.in_details},
                "outputs": {d["name"]: pack(d) for d in self.out_details}}

    def op_counts(self):
        return op_counts(self.path)

    def run(self, feeds):
        q = {d["name"]: quantize(feeds[s.name], d) for d, s in zip(self.in_details, self.inputs)}
        if self.runner is not None:
            result = self.runner(**q)
            raw = [(d, result[d["name"]]) for d in self.out_details]
        else:
            for d in self.in_details:
                if list(d["shape"]) != list(q[d["name"]].shape):
                    self.interp.resize_tensor_input(d["index"], q[d["name"]].shape)
            self.interp.allocate_tensors()
            for d in self.in_details:
                self.interp.set_tensor(d["index"], q[d["name"]])
            self.interp.invoke()
            raw = [(d, self.interp.get_tensor(d["index"])) for d in self.out_details]
        return [(d["name"], dequantize(v, d)) for d, v in raw]

    def run_logits(self, feeds):
        """The logits of the last run (the interpreter keeps every tensor)."""
        return {name: dequantize(self.interp.get_tensor(d["index"]), d).astype(np.float32)
                for name, d in self._logit_tensors.items()}
