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
        self._graph, self._logit_nodes, self.logit_ops = None, {}, {}

    def _names(self, count):
        return self.out_names or [f"output_{i}" for i in range(count)]

    def run(self, feeds):
        results = torch_models.run(self.model, [feeds[s.name] for s in self.inputs], self.shapes_text)
        self.output_names = self._names(len(results))
        return list(zip(self.output_names, results))

    def _find_logits(self, example):
        """The exported graph and {output index: node feeding its final activation}."""
        if self.kind == "torchscript":
            return None, {}
        try:
            graph_module = self.model if self.kind == "exported_program" else torch.export.export(
                self.model, tuple(torch.from_numpy(np.asarray(a, self._dtype())) for a in example)).module()
        except Exception:  # a model torch.export cannot trace: no logits
            return None, {}
        output = next(n for n in graph_module.graph.nodes if n.op == "output")
        flat = output.args[0] if isinstance(output.args[0], (list, tuple)) else [output.args[0]]
        found = {}
        for i, node in enumerate(flat):
            while isinstance(node, torch.fx.Node) and _op_name(node) in PASS_THROUGH:
                node = node.args[0]
            if isinstance(node, torch.fx.Node) and _op_name(node) in ACTIVATIONS:
                found[i] = (node.args[0], _op_name(node))
        return graph_module, found

    def run_logits(self, feeds):
        arrays = [feeds[s.name] for s in self.inputs]
        if self._graph is None:
            self._graph, self._logit_nodes = self._find_logits(arrays)
            self._graph = self._graph or False
            self.logit_ops = {self._names(max(self._logit_nodes) + 1)[i]: op
                              for i, (_n, op) in self._logit_nodes.items()} if self._logit_nodes else {}
        if not self._logit_nodes:
            return {}
        wanted = {node: i for i, (node, _op) in self._logit_nodes.items()}
        captured = {}

        class Capture(torch.fx.Interpreter):
            def run_node(self, n):
                value = super().run_node(n)
                if n in wanted:
                    captured[wanted[n]] = value.detach().cpu().numpy()
                return value

        with torch.no_grad():
            Capture(self._graph).run(*[torch.from_numpy(np.asarray(a, self._dtype())) for a in arrays])
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
