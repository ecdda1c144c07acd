"""Helpers shared by the step scripts of the Python 3 stacks (tf2, torch, onnx2tf): copied into each image's
/opt/steps by the build (stack.json "shared": true). They run inside containers, never on the host."""

import json
import os
import platform
import sys

EX_DATAERR = 65  # the host reports this exit status as bad input (exit 2), with our last stderr line


def reject(message):
    """Stop: the input is unusable. One line, no traceback."""
    print(f"ERROR: {message}", file=sys.stderr, flush=True)
    sys.exit(EX_DATAERR)


def first_line(exc):
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


# libraries whose versions a step reports, when it has imported them
REPORTED = ("tensorflow", "keras", "tf_keras", "torch", "onnx", "onnxruntime", "onnxsim", "onnxscript", "onnx2tf",
            "tensorflowjs", "jax", "flax")


def versions():
    """Versions of the libraries that matter, as installed in this image (imported or not: a step may run its
    converter in a child process)."""
    from importlib import metadata

    import numpy

    found = {"python": platform.python_version(), "numpy": numpy.__version__}
    for name in REPORTED:
        module = sys.modules.get(name)
        if module is not None and isinstance(getattr(module, "__version__", None), str):
            found[name] = module.__version__
            continue
        try:
            found[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            pass
    if "tensorflow" in sys.modules and "keras" not in found:
        try:
            import keras

            found["keras"] = keras.__version__
        except ImportError:
            pass
    return found


def write_json(path, data):
    with open(path, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True, default=_jsonable)
        fh.write("\n")


def _jsonable(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def save_json_arrays(path, arrays):
    """{name: array} -> JSON readable by the TF.js runtime stack (which has no .npz reader)."""
    import numpy as np

    doc = {k: {"shape": list(np.shape(v)), "dtype": "int32" if np.asarray(v).dtype.kind in "iu" else "float32",
               "data": np.asarray(v).reshape(-1).tolist()} for k, v in arrays.items()}
    with open(path, "w") as fh:
        json.dump(doc, fh)


def step_done(out, artifacts, **info):
    write_json(os.path.join(out, "step.json"), {"artifacts": artifacts, "versions": versions(), "info": info})


def csv(value):
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def shapes(value):
    """'1,224,224,3:1,10' -> [[1,224,224,3],[1,10]]"""
    if not value:
        return []
    try:
        return [[int(d) for d in part.split(",") if d.strip()] for part in value.split(":")]
    except ValueError:
        reject(f"--input_shapes '{value}' is not a list of comma-separated integers (several inputs: use ':')")


def load_array_file(path):
    """A .npy -> [array]; a .npz or .json ({name: {shape, dtype, data}}) -> {name: array} (in file order)."""
    import numpy as np

    try:
        if path.endswith(".json"):
            with open(path) as fh:
                doc = json.load(fh)
            return {k: np.asarray(v["data"], dtype=v.get("dtype", "float32")).reshape(v["shape"])
                    for k, v in doc.items()}
        if path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        return [np.load(path, allow_pickle=False)]
    except Exception as exc:  # numpy raises several types for bad files
        reject(f"{path}: not a readable numpy file ({first_line(exc)})")


def runner_arguments(formats=None, options=()):
    """The command line every verification runner takes (the host's verify.plan_runs writes it):
    --format F --input MODEL --out DIR, then --make-inputs [--seed N] [--sample_input FILE] as the reference or
    --inputs REF/inputs.json as the result; `options`: the format options this runner accepts (--name VALUE)."""
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--format", required=True, choices=formats)
    p.add_argument("--input", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--make-inputs", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sample_input")
    p.add_argument("--inputs")
    for name in options:
        p.add_argument("--" + name)
    return p.parse_args()


def import_user_file(path):
    """Import a user's Python file by path, as a module named after it, with its folder importable (the code may
    import its neighbours). A failure is the user's input error. Runs only inside a no-network container."""
    import importlib.util

    folder = os.path.dirname(path)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = os.path.splitext(os.path.basename(path))[0]
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    except Exception as exc:
        reject(f"{path}: importing it failed ({first_line(exc)})")
    return module
