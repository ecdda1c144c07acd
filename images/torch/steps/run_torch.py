"""Run a PyTorch model for verification (the reference of PyTorch routes).

    run_torch.py --format pytorch --input MODEL --out DIR --input_shape S [--model_code F:C] [--model_args J]
                 (--plan JSON | --inputs inputs.json)
Inputs are named as the ONNX export names them (--input_names, default input_0, ...), outputs likewise
(--output_names, default output_0, ...). See common.verification_run for what it writes. Logits are read with
torch.fx from the model's exported graph (nn.Module and ExportedProgram inputs; not TorchScript); the perturbed
run is the model in float64.
"""

import copy

import numpy as np
import torch

import torch_models
from common import Spec, csv, reject, runner_arguments, shapes, verification_run

ACTIVATIONS = ("softmax", "_softmax", "sigmoid", "argmax", "log_softmax", "_log_softmax")
PASS_THROUGH = ("view", "reshape", "squeeze", "clone", "flatten", "_unsafe_view", "alias")


def _op_name(node):
    """'softmax' for aten.softmax.int, '' for anything that is not an ATen call."""
    name = getattr(getattr(node.target, "_overloadpacket", None), "__name__", "")
    return name if node.op == "call_function" else ""


class TorchModel:
    def __init__(self, model, kind, in_shapes, names, out_names, shapes_text):
        self.model, self.kind, self.shapes_text = model, kind, shapes_text
        self.inputs = [Spec(n, s, "float32") for n, s in zip(names, in_shapes)]
        self.out_names = out_names
        self.output_names = None
        self._graph, self.logit_ops = None, {}

    def _names(self, count):
        return self.out_names or [f"output_{i}" for i in range(count)]

    def run(self, feeds):
        results = torch_models.run(self.model, [feeds[s.name] for s in self.inputs], self.shapes_text)
        self.output_names = self._names(len(results))
        return list(zip(self.output_names, results))

    def _find_logits(self, example):
        """(callable(arrays) -> {output index: logits}, {output index: op}) or (None, {})."""
        if self.kind == "torchscript":
            return _torchscript_logits(self.model)
        try:
            graph_module = self.model if self.kind == "exported_program" else torch.export.export(
                self.model, tuple(torch.from_numpy(np.asarray(a, self._dtype())) for a in example)).module()
        except Exception:  # a model torch.export cannot trace: no logits
            return None, {}
        return _fx_logits(graph_module)

    def run_logits(self, feeds):
        arrays = [np.asarray(feeds[s.name], self._dtype()) for s in self.inputs]
        if self._graph is None:
            self._graph, ops = self._find_logits(arrays)
            self._graph = self._graph or False
            if ops:
                self.logit_ops = {self._names(max(ops) + 1)[i]: op for i, op in ops.items()}
        if not self._graph:
            return {}
        with torch.no_grad():
            captured = self._graph([torch.from_numpy(a) for a in arrays])
        names = self.output_names or self._names(max(captured) + 1)
        return {names[i]: v for i, v in captured.items()}

    def _dtype(self):
        return np.float32

    def perturbed(self):
        """The same model in float64."""
        try:
            twin = TorchModel64(copy.deepcopy(self.model).double(), self)
            twin.run({s.name: np.zeros(s.shape, np.float32) for s in self.inputs})
        except Exception:
            return None, None
        return twin, "the PyTorch model in float64"


class TorchModel64(TorchModel):
    def __init__(self, model, base):
        super().__init__(model, base.kind, [s.shape for s in base.inputs], [s.name for s in base.inputs],
                         base.out_names, base.shapes_text)

    def run(self, feeds):
        with torch.no_grad():
            result = self.model(*[torch.from_numpy(np.asarray(feeds[s.name], np.float64)) for s in self.inputs])
        results = [t.detach().cpu().numpy() for t in torch_models.flat_outputs(result)]
        self.output_names = self._names(len(results))
        return list(zip(self.output_names, results))

    def _dtype(self):
        return np.float64


def _walk(node, op_of, inputs_of):
    """From an output's producer back through shape-only ops: (activation op, its input) or (None, None)."""
    while node is not None and op_of(node) in PASS_THROUGH:
        node = inputs_of(node)
    if node is not None and op_of(node) in ACTIVATIONS:
        return op_of(node), node
    return None, None


def _fx_logits(graph_module):
    """Logits of an exported program's GraphModule, read with a torch.fx Interpreter."""
    output = next(n for n in graph_module.graph.nodes if n.op == "output")
    flat = output.args[0] if isinstance(output.args[0], (list, tuple)) else [output.args[0]]
    wanted, ops = {}, {}
    for i, node in enumerate(flat):
        if not isinstance(node, torch.fx.Node):
            continue
        op, act = _walk(node, _op_name, lambda n: n.args[0] if isinstance(n.args[0], torch.fx.Node) else None)
        if op:
            wanted[act.args[0]], ops[i] = i, op
    if not wanted:
        return None, {}

    def run(tensors):
        captured = {}

        class Capture(torch.fx.Interpreter):
            def run_node(self, n):
                value = super().run_node(n)
                if n in wanted:
                    captured[wanted[n]] = value.detach().cpu().numpy()
                return value

        Capture(graph_module).run(*tensors)
        return captured

    return run, ops


def _torchscript_logits(module):
    """Logits of a TorchScript module: its frozen graph, cut at each activation's input into a new function."""
    try:
        frozen = torch.jit.freeze(module.eval())
        graph = frozen.graph
        returned = list(graph.return_node().inputs())
        if len(returned) == 1 and returned[0].node().kind() == "prim::TupleConstruct":
            returned = list(returned[0].node().inputs())
        kind = lambda n: n.kind().split("::")[-1] if n.kind().startswith("aten::") else ""  # noqa: E731
        functions, ops = {}, {}
        for i, value in enumerate(returned):
            op, act = _walk(value.node(), kind, lambda n: next(n.inputs()).node())
            if not op:
                continue
            cut = graph.copy()
            # a copy renumbers unnamed values: find the logits by their producer's position and output index
            logit = next(act.inputs())
            position = list(graph.nodes()).index(logit.node())
            index = list(logit.node().outputs()).index(logit)
            copied = list(list(cut.nodes())[position].outputs())[index]
            for _ in range(len(list(cut.outputs()))):
                cut.eraseOutput(0)
            cut.registerOutput(copied)
            functions[i] = torch._C._create_function_from_graph(f"logits_{i}", cut)
            ops[i] = op
    except Exception:  # a graph this cannot cut: no logits
        return None, {}
    if not functions:
        return None, {}

    def run(tensors):
        return {i: fn(frozen._c, *tensors).detach().cpu().numpy() for i, fn in functions.items()}

    return run, ops


def main():
    args = runner_arguments(formats=["pytorch"], options=("input_shape", "model_code", "model_args", "input_names",
                                                          "output_names"))
    if not args.input_shape:
        reject("the PyTorch runner needs --input_shape")
    model, kind = torch_models.load(args.input, args.model_code, args.model_args)
    in_shapes = shapes(args.input_shape)
    names = csv(args.input_names) or [f"input_{i}" for i in range(len(in_shapes))]
    runner = TorchModel(model, kind, in_shapes, names, csv(args.output_names), args.input_shape)
    verification_run(runner, args, {"layout": "NCHW (PyTorch)", "source_kind": kind})


if __name__ == "__main__":
    main()
