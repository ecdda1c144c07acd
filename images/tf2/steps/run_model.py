"""Run a model on inputs for verification: make seeded inputs (or take a sample), run, save outputs.

    run_model.py --format F --input MODEL --out DIR [--make-inputs [--seed N] [--sample-input FILE]]
                 [--inputs inputs.npz] [format options]
Writes DIR/inputs.npz (with --make-inputs), DIR/outputs.npz, DIR/run.json and DIR/step.json.
"""

import os

import numpy as np

import models
from common import load_array_file, reject, runner_arguments, save_json_arrays, step_done, write_json


def concrete_shape(spec):
    return [1 if (d is None and i == 0) else (16 if d is None else d) for i, d in enumerate(spec.shape)]


def random_input(spec, rng):
    shape = concrete_shape(spec)
    if spec.dtype.kind == "f":
        return rng.uniform(-1.0, 1.0, shape).astype(spec.dtype)
    if spec.dtype.kind in "iu":
        return rng.integers(0, 10, shape).astype(spec.dtype)
    if spec.dtype.kind == "b":
        return rng.random(shape) < 0.5
    reject(f"input '{spec.name}' has dtype {spec.dtype}, for which no random input is defined; use --sample_input")


def fits(spec, array):
    return len(spec.shape) == array.ndim and all(d is None or d == a for d, a in zip(spec.shape, array.shape))


def match_inputs(specs, given, source):
    """Pair the model's inputs with given arrays: by name when every name matches, else by order."""
    if isinstance(given, dict) and all(s.name in given for s in specs):
        arrays = [given[s.name] for s in specs]
    else:
        values = list(given.values()) if isinstance(given, dict) else list(given)
        if len(values) != len(specs):
            reject(f"{source}: holds {len(values)} array(s) but the model has {len(specs)} input(s) "
                   f"({', '.join(s.name for s in specs)})")
        arrays = values
    feeds = {}
    for spec, arr in zip(specs, arrays):
        if not fits(spec, arr) and fits(spec, arr[None]):
            arr = arr[None]
        if not fits(spec, arr):
            reject(f"{source}: array of shape {list(arr.shape)} does not fit input '{spec.name}' of shape "
                   f"{['?' if d is None else d for d in spec.shape]}")
        feeds[spec.name] = arr.astype(spec.dtype) if arr.dtype != spec.dtype else arr
    return feeds


def main():
    args = runner_arguments(options=("signature_name", "saved_model_tags", "input_arrays", "output_arrays",
                                     "input_shapes", "max_detections", "output_node_names"))

    model = models.load(args.format, args.input, args)
    if args.make_inputs:
        if args.sample_input:
            feeds = match_inputs(model.inputs, load_array_file(args.sample_input), args.sample_input)
            origin = {"kind": "sample", "file": os.path.basename(args.sample_input)}
        else:
            rng = np.random.default_rng(args.seed)
            feeds = {s.name: random_input(s, rng) for s in model.inputs}
            origin = {"kind": "random", "seed": args.seed, "float_range": [-1.0, 1.0], "int_range": [0, 10]}
        np.savez(os.path.join(args.out, "inputs.npz"), **feeds)
        save_json_arrays(os.path.join(args.out, "inputs.json"), feeds)
    else:
        given = load_array_file(args.inputs)
        feeds = match_inputs(model.inputs, given, args.inputs)
        origin = {"kind": "given"}
    outputs = model.run(feeds)
    np.savez(os.path.join(args.out, "outputs.npz"), **{n: np.asarray(v) for n, v in outputs})
    info = {
        "inputs": [dict(s.to_json(), fed_shape=list(feeds[s.name].shape)) for s in model.inputs],
        "outputs": [{"name": n, "shape": list(np.shape(v)), "dtype": np.asarray(v).dtype.name} for n, v in outputs],
        "origin": origin,
    }
    if hasattr(model, "details"):
        info["tensors"] = model.details()
    if hasattr(model, "op_counts"):
        info["transpose_ops"] = model.op_counts().get("TRANSPOSE", 0)
    if getattr(model, "checks", None):
        info["checks"] = model.checks
    write_json(os.path.join(args.out, "run.json"), info)
    step_done(args.out, ["outputs.npz"], **info)


if __name__ == "__main__":
    main()
