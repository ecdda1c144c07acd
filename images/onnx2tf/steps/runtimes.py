"""Runtimes of the onnx2tf stack (onnxruntime, the TFLite interpreter, SavedModel signatures). The layout bridge
between an ONNX (NCHW) model and its onnx2tf conversion (NHWC) is images/shared/layout_bridge.py (the litert_torch
stack's runner uses it too); its names are re-exported here."""

import os

import verify_io
from common import Spec, first_line, reject
from layout_bridge import ConvertedTFLite, adapt_inputs, adapt_outputs, match, to_first, to_last  # noqa: F401
from saved_model_runtime import SignatureModel
from tflite_runtime import TFLiteModel  # noqa: F401


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
            # onnxruntime 1.23's Pad_Fusion folds a constant Pad into a 3-D AveragePool, whose kernel then divides
            # by the wrong count when only the first spatial axis is padded (the trailing padding is dropped): the
            # reference itself would be wrong on torch's dynamo export of LocalResponseNorm (5-D Pad +
            # AveragePool). Fixed upstream after 1.23; until the stack moves, the reference runs without it.
            return ort.InferenceSession(self._serialized(), options, providers=["CPUExecutionProvider"],
                                        disabled_optimizers=["Pad_Fusion"])
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


class ConvertedSavedModel(SignatureModel):
    """An onnx2tf SavedModel, bridged to the reference's layout like ConvertedTFLite (no logits)."""

    adapt_inputs = ConvertedTFLite.adapt_inputs

    def adapt_outputs(self, outputs, logits, ref_outputs, ref_logits):
        got, layout = adapt_outputs(outputs, ref_outputs)
        return got, {}, layout


LOADERS = {"onnx": OnnxModel, "tflite": ConvertedTFLite, "tf_saved_model": ConvertedSavedModel}


def load(fmt, path):
    return LOADERS[fmt](path)
