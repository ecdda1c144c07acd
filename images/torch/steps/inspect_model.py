"""`orchestrator inspect` in the torch stack: TorchScript, ExportedProgram (.pt2), and torch.save files (a
state_dict is loaded with weights_only: its tensors are counted, its architecture is in the user's code).

    inspect_model.py --format pytorch --input MODEL --out DIR
"""

import os

import model_info
import torch
import torch_models


def _dtype(value):
    return str(value).replace("torch.", "")


def pytorch(args):
    kind = torch_models.kind_of(args.input)
    size = os.path.getsize(args.input)
    producer = {"kind": kind, "read_with": "torch " + torch.__version__}
    if kind == "exported_program":
        program = torch.export.load(args.input)
        nodes = list(program.graph_module.graph.nodes)
        user = set(program.graph_signature.user_inputs)
        inputs = [model_info.tensor(n.name, list(n.meta["val"].shape), _dtype(n.meta["val"].dtype))
                  for n in nodes if n.op == "placeholder" and n.name in user and hasattr(n.meta.get("val"), "shape")]
        outputs = []
        for n in nodes:
            if n.op == "output":
                for i, o in enumerate(n.args[0]):
                    val = getattr(o, "meta", {}).get("val")
                    outputs.append(model_info.tensor("output_%d" % i, list(val.shape) if hasattr(val, "shape")
                                                     else None, _dtype(getattr(val, "dtype", ""))))
        ops = [str(n.target).replace("aten.", "").rsplit(".default", 1)[0] for n in nodes if n.op == "call_function"]
        params = sum(int(t.numel()) for t in program.state_dict.values())
    elif kind == "torchscript":
        module = torch.jit.load(args.input, map_location="cpu")
        graph = module.inlined_graph
        inputs = [model_info.tensor(v.debugName(), None, "") for v in list(graph.inputs())[1:]]
        outputs = [model_info.tensor(v.debugName(), None, "") for v in graph.outputs()]
        ops = [n.kind().replace("aten::", "") for n in graph.nodes() if not n.kind().startswith("prim::")]
        params = sum(int(p.numel()) for p in module.parameters())
    else:
        try:  # a state_dict loads without running code; anything else would run the pickle's code
            obj = torch.load(args.input, map_location="cpu", weights_only=True)
        except Exception:
            return model_info.info("pytorch", [], [], {}, None, size, producer, notes=[
                "a pickled object other than a state_dict (a whole nn.Module?): reading it runs its code, which "
                "inspect does not; convert it with --model_code FILE.py:ClassName"])
        if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
            obj = obj["state_dict"]
        tensors = [v for v in obj.values() if isinstance(v, torch.Tensor)] if isinstance(obj, dict) else []
        return model_info.info("pytorch", [], [], {}, sum(int(t.numel()) for t in tensors), size, producer,
                               notes=["a state_dict of %d tensors: its architecture is in the code that made it "
                                      "(--model_code)" % len(tensors)])
    return model_info.info("pytorch", inputs, outputs, ops, params, size, producer, {"node": model_info.count(ops)})


if __name__ == "__main__":
    model_info.main({"pytorch": pytorch})
