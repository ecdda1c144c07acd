"""Load a user's PyTorch model inside the torch stack (no network, read-only input): TorchScript, an
ExportedProgram (.pt2), a pickled nn.Module, or a state_dict with --model_code FILE.py:ClassName.

Unpickling a user's file runs code from it: that happens only here, in the no-network container."""

import argparse
import json
import sys
import zipfile

import torch

from common import csv, first_line, import_user_file, reject, shapes


def zip_names(path):
    try:
        with zipfile.ZipFile(path) as zf:
            return zf.namelist()
    except (zipfile.BadZipFile, OSError):
        return []


def kind_of(path):
    """'torchscript', 'exported_program' or 'pickle' (a torch.save file: state_dict or whole module)."""
    names = zip_names(path)
    if any(n.endswith("serialized_exported_program.json") or "/models/model.json" in n for n in names) \
            or path.endswith(".pt2"):
        return "exported_program"
    if any(n.split("/", 1)[-1].startswith("code/") for n in names) and any(n.endswith("constants.pkl")
                                                                         for n in names):
        return "torchscript"
    return "pickle"


def load_code(spec, args_json):
    """--model_code FILE.py:ClassName (+ --model_args JSON): the user's class, instantiated."""
    path, _, attr = spec.rpartition(":")
    module = import_user_file(path)
    cls = getattr(module, attr, None)
    if cls is None:
        reject(f"{path}: defines no '{attr}'")
    ctor = json.loads(args_json) if args_json else {}
    try:
        if isinstance(ctor, list):
            return cls(*ctor)
        return cls(**ctor)
    except Exception as exc:
        reject(f"{path}: {attr}({args_json or ''}) raised {first_line(exc)}")


def load(path, model_code=None, model_args=None):
    """(module to call, kind) with the module in eval mode."""
    kind = kind_of(path)
    name = path  # the container path: the host shows the user's own path in its place
    if kind == "torchscript":
        try:
            model = torch.jit.load(path, map_location="cpu")
        except Exception as exc:
            reject(f"{name}: not a loadable TorchScript file ({first_line(exc)})")
        return model.eval(), kind
    if kind == "exported_program":
        try:
            program = torch.export.load(path)
        except Exception as exc:
            reject(f"{name}: not a loadable ExportedProgram ({first_line(exc)})")
        return program.module(), kind
    if model_code:
        module = load_code(model_code, model_args)
        # a module pickled from a script refers to __main__.ClassName
        setattr(sys.modules["__main__"], model_code.rpartition(":")[2], type(module))
    try:
        # a state_dict needs no code execution; a whole pickled module does (and needs its class importable)
        obj = torch.load(path, map_location="cpu", weights_only=not model_code)
    except Exception as exc:
        if not model_code and "weights_only" in str(exc):
            reject(f"{name}: a pickled object that is not a state_dict; give its class with --model_code "
                   f"FILE.py:ClassName")
        # with --model_code the pickle runs code of its own: what it raised is said as loading, not as the format
        reject(f"{name}: {'loading it failed' if model_code else 'not a PyTorch file'} ({first_line(exc)})")
    if isinstance(obj, torch.nn.Module):
        return obj.eval(), "module"
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]  # a training checkpoint
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        if not model_code:
            reject(f"{name}: a state_dict ({len(obj)} tensors) needs its model class: --model_code FILE.py:ClassName")
        try:
            module.load_state_dict(obj)
        except Exception as exc:
            reject(f"{name}: does not fit {model_code.rpartition(':')[2]} ({first_line(exc)})")
        return module.eval(), "state_dict"
    reject(f"{name}: holds a {type(obj).__name__}, not a model or a state_dict")


def example_inputs(shapes, rng=None):
    import numpy as np

    rng = rng or np.random.default_rng(0)
    return [rng.uniform(-1.0, 1.0, s).astype("float32") for s in shapes]


def flat_outputs(result):
    """A model's result as a list of tensors (tuples, lists and dicts flattened in order)."""
    if isinstance(result, torch.Tensor):
        return [result]
    if isinstance(result, (list, tuple)):
        return [t for r in result for t in flat_outputs(r)]
    if isinstance(result, dict):
        return [t for k in result for t in flat_outputs(result[k])]
    reject(f"the model returns a {type(result).__name__}; only tensors (or tuples/lists/dicts of them) convert")


def run(model, arrays, shapes_text):
    """Call the model on numpy arrays; a shape the model rejects is the user's input error."""
    with torch.no_grad():
        try:
            result = model(*[torch.from_numpy(a) for a in arrays])
        except Exception as exc:
            reject(f"--input_shape {shapes_text}: the model rejects inputs of shape "
                   f"{' and '.join(str(list(a.shape)) for a in arrays)} ({first_line(exc)})")
    return [t.detach().cpu().numpy() for t in flat_outputs(result)]


def arguments():
    """The argument parser of a step that reads a PyTorch model (export_onnx.py, litert_convert.py), with the options
    they share; each step adds its own."""
    p = argparse.ArgumentParser()
    p.add_argument("--input", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--input_shape", required=True)
    p.add_argument("--model_code")
    p.add_argument("--model_args")
    p.add_argument("--input_names")
    p.add_argument("--output_names")
    return p


def prepared(args):
    """(model, kind, example arrays, its outputs, input names, output names): the model loaded, run once on example
    inputs of --input_shape (a wrong shape is one line), and its inputs and outputs named (input_0.., output_0..
    unless --input_names/--output_names say)."""
    model, kind = load(args.input, args.model_code, args.model_args)
    arrays = example_inputs(shapes(args.input_shape))
    outputs = run(model, arrays, args.input_shape)
    input_names = csv(args.input_names) or [f"input_{i}" for i in range(len(arrays))]
    output_names = csv(args.output_names) or [f"output_{i}" for i in range(len(outputs))]
    if len(input_names) != len(arrays):
        reject(f"--input_names names {len(input_names)} input(s); --input_shape gives {len(arrays)}")
    if len(output_names) != len(outputs):
        reject(f"--output_names names {len(output_names)} output(s); the model returns {len(outputs)}")
    return model, kind, arrays, outputs, input_names, output_names
