"""Runtimes of the onnx2tf stack (onnxruntime, the TFLite interpreter, SavedModel signatures) and the layout
bridge between an ONNX (NCHW) model and its onnx2tf conversion (NHWC): inputs are transposed to the converted
model's shapes, outputs transposed back to the reference's."""

import os

import numpy as np

import verify_io
from common import Spec, first_line, reject
from saved_model_runtime import SignatureModel
from tflite_runtime import TFLiteModel


def to_last(rank):
    """NCHW -> NHWC permutation for a tensor of this rank (channels from axis 1 to the end)."""
    return (0,) + tuple(range(2, rank)) + (1,)


def to_first(rank):
    """NHWC -> NCHW."""
    return (0, rank - 1) + tuple(range(1, rank - 1))


class OnnxModel:
    """onnxruntime on the user's graph. Outputs that end in Softmax/Sigmoid/ArgMax/LogSoftmax also give their
    logits (the activation's input, added as an extra graph output); `perturbed()` is the same graph with
    onnxruntime's graph optimizations off."""

    ACTIVATIONS = ("Softmax", "Sigmoid", "ArgMax", "LogSoftmax")
    PASS_THROUGH = ("Identity", "Reshape", "Squeeze", "Flatten")
    TYPES = {"tensor(float)": "float32", "tensor(double)": "float64", "tensor(int64)": "int64",
             "tensor(int32)": "int32", "tensor(bool)": "bool", "tensor(uint8)": "uint8", "tensor(int8)": "int8",
             "tensor(float16)": "float16"}

    def __init__(self, path, optimize=True, logits=True):
        import onnx

        self.path = path
        try:
            self.proto = onnx.load(path)
        except Exception as exc:
            reject(f"{os.path.basename(path)}: not a readable ONNX model ({first_line(exc)})")
        self.logit_ops, self._logit_names = self._find_logits() if logits else ({}, {})
        self.session = self._session(optimize)
        self.inputs = [Spec(i.name, i.shape, self.TYPES.get(i.type, "float32")) for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.proto.graph.output]
        self._last_logits = {}

    def _serialized(self):
        """The graph, with the logits as extra outputs."""
        import onnx

        if not self._logit_names:
            return self.proto.SerializeToString()
        model = onnx.ModelProto()
        model.CopyFrom(self.proto)
        try:
            known = {v.name: v for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
        except Exception:
            known = {}
        for name in self._logit_names.values():
            model.graph.output.append(known.get(name) or onnx.helper.make_tensor_value_info(
                name, onnx.TensorProto.FLOAT, None))
        return model.SerializeToString()

    def _session(self, optimize):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        if not optimize:
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            return ort.InferenceSession(self._serialized(), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            reject(f"{os.path.basename(self.path)}: onnxruntime cannot load it ({first_line(exc)})")

    def _find_logits(self):
        producer = {o: node for node in self.proto.graph.node for o in node.output}
        ops, names = {}, {}
        graph_inputs = {i.name for i in self.proto.graph.input}
        for out in self.proto.graph.output:
            node = producer.get(out.name)
            while node is not None and node.op_type in self.PASS_THROUGH and node.input:
                node = producer.get(node.input[0])
            if node is not None and node.op_type in self.ACTIVATIONS and node.input[0] not in graph_inputs:
                ops[out.name], names[out.name] = node.op_type, node.input[0]
        return ops, names

    def input_specs(self):
        """Integer inputs used as Gather indices into a constant table take that table's size as their range."""
        tables = {t.name: list(t.dims) for t in self.proto.graph.initializer}
        ranges = {}
        for node in self.proto.graph.node:
            if node.op_type == "Gather" and len(node.input) == 2 and node.input[0] in tables:
                axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
                dims = tables[node.input[0]]
                if dims:
                    ranges[node.input[1]] = (0, int(dims[axis]))
        return [verify_io.InputSpec(s.name, s.concrete(), s.dtype, ranges.get(s.name)) for s in self.inputs]

    def run(self, feeds):
        wanted = self.output_names + list(self._logit_names.values())
        values = self.session.run(wanted, {s.name: feeds[s.name] for s in self.inputs})
        n = len(self.output_names)
        self._last_logits = dict(zip(self._logit_names, values[n:]))
        return list(zip(self.output_names, values[:n]))

    def run_logits(self, feeds):
        return self._last_logits

    def perturbed(self):
        twin = OnnxModel.__new__(OnnxModel)
        twin.__dict__.update(self.__dict__)
        twin.session = self._session(optimize=False)
        return twin, "onnxruntime graph optimizations off"


class ConvertedTFLite(TFLiteModel):
    """An onnx2tf .tflite fed the reference's NCHW inputs (transposed to its NHWC shapes), its outputs and logits
    read back into the reference's layout and names."""

    def adapt_inputs(self, batches):
        return adapt_inputs(self.inputs, batches)

    def adapt_outputs(self, outputs, logits, ref_outputs, ref_logits):
        got, layout = adapt_outputs(outputs, ref_outputs)
        names = match(list(outputs), list(ref_outputs)) or {}
        renamed = {ref: logits[got_name] for ref, got_name in names.items() if got_name in logits}
        # the logits' ops are recorded under the reference's names too
        self.logit_ops = {ref: self.logit_ops[got_name] for ref, got_name in names.items()
                          if got_name in self.logit_ops}
        got_logits, _ = adapt_outputs(renamed, {k: v for k, v in ref_logits.items() if k in renamed}, rename=False)
        return got, got_logits, layout


class ConvertedSavedModel(SignatureModel):
    """An onnx2tf SavedModel, bridged to the reference's layout like ConvertedTFLite (no logits)."""

    adapt_inputs = ConvertedTFLite.adapt_inputs

    def adapt_outputs(self, outputs, logits, ref_outputs, ref_logits):
        got, layout = adapt_outputs(outputs, ref_outputs)
        return got, {}, layout


LOADERS = {"onnx": OnnxModel, "tflite": ConvertedTFLite, "tf_saved_model": ConvertedSavedModel}


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


def _batched(perm):
    """A per-sample permutation applied to a batch [K, ...]."""
    return (0,) + tuple(p + 1 for p in perm)


def adapt_inputs(specs, given):
    """Batches for a converted model from reference batches {name: [K, ...]} (ONNX layout): same shape, or the
    NCHW -> NHWC transposition of it. Returns (batches, layout record)."""
    pairs = match([s.name for s in specs], list(given))
    if pairs is None:
        reject(f"the converted model has {len(specs)} input(s), the reference {len(given)}")
    by_name = {s.name: s for s in specs}
    feeds, layout = {}, {}
    for ref_name, arr in given.items():
        spec, rank = by_name[pairs[ref_name]], arr.ndim - 1
        if spec.fits(arr.shape[1:]):
            feeds[spec.name], layout[ref_name] = arr, "same"
        elif rank >= 3 and spec.fits(arr.transpose(_batched(to_last(rank))).shape[1:]):
            feeds[spec.name] = np.ascontiguousarray(arr.transpose(_batched(to_last(rank))))
            layout[ref_name] = "NCHW->NHWC" if rank == 4 else f"transposed {list(to_last(rank))}"
        else:
            reject(f"reference input '{ref_name}' {list(arr.shape[1:])} fits neither the converted input "
                   f"'{spec.name}' {spec.shape} nor its NHWC transposition")
        feeds[spec.name] = feeds[spec.name].astype(spec.dtype)
    return feeds, layout


def adapt_outputs(got, reference, rename=True):
    """Converted output batches {name: [K, ...]} renamed and transposed back to the reference's. When both the
    plain and the transposed layout fit a shape, the one closer to the reference (over all samples) wins."""
    pairs = match(list(got), list(reference)) if rename else {n: n for n in reference if n in got}
    if pairs is None:  # let the compare step report the count mismatch
        return got, {}
    result, layout = {}, {}
    for ref_name, ref in reference.items():
        if ref_name not in pairs:
            continue
        g = np.asarray(got[pairs[ref_name]])
        rank = g.ndim - 1
        candidates = []
        if g.shape == ref.shape:
            candidates.append(("same", g))
        if rank >= 3:
            back = g.transpose(_batched(to_first(rank)))
            if back.shape == ref.shape:
                candidates.append(("NHWC->NCHW" if rank == 4 else f"transposed {list(to_first(rank))}", back))
        if not candidates:
            result[ref_name], layout[ref_name] = g, "shape differs"
            continue
        best = min(candidates, key=lambda c: float(np.max(np.abs(c[1].astype(np.float64) - ref))) if ref.size else 0)
        layout[ref_name], result[ref_name] = best[0], np.ascontiguousarray(best[1])
    return result, layout
