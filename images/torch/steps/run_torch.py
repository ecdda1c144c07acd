"""Run a PyTorch model for verification (the reference of PyTorch routes).

    run_torch.py --format pytorch --input MODEL --out DIR --input_shape S [--model_code F:C] [--model_args J]
                 (--make-inputs [--seed N] [--sample_input FILE] | --inputs inputs.json)
Inputs are named as the ONNX export names them (--input_names, default input_0, ...), outputs likewise
(--output_names, default output_0, ...). Writes inputs.npz/.json (with --make-inputs), outputs.npz, run.json.
"""

import os

import numpy as np

import torch_models
from common import csv, load_array_file, reject, runner_arguments, save_json_arrays, shapes, step_done, write_json


def given_arrays(given, names, in_shapes, source):
    if isinstance(given, dict) and all(n in given for n in names):
        arrays = [given[n] for n in names]
    else:
        arrays = list(given.values()) if isinstance(given, dict) else list(given)
    if len(arrays) != len(names):
        reject(f"{source}: holds {len(arrays)} array(s) but the model has {len(names)} input(s)")
    fitted = []
    for name, arr, shape in zip(names, arrays, in_shapes):
        if arr.ndim == len(shape) - 1:
            arr = arr[None]
        if arr.ndim != len(shape) or list(arr.shape[1:]) != list(shape[1:]):
            reject(f"{source}: array of shape {list(arr.shape)} does not fit input '{name}' of shape {shape}")
        fitted.append(arr.astype("float32"))
    return fitted


def main():
    args = runner_arguments(formats=["pytorch"], options=("input_shape", "model_code", "model_args", "input_names",
                                                          "output_names"))
    if not args.input_shape:
        reject("the PyTorch runner needs --input_shape")

    model, kind = torch_models.load(args.input, args.model_code, args.model_args)
    in_shapes = shapes(args.input_shape)
    names = csv(args.input_names) or [f"input_{i}" for i in range(len(in_shapes))]
    if args.make_inputs and not args.sample_input:
        arrays = torch_models.example_inputs(in_shapes, np.random.default_rng(args.seed))
        origin = {"kind": "random", "seed": args.seed, "float_range": [-1.0, 1.0]}
    else:
        source = args.sample_input or args.inputs
        arrays = given_arrays(load_array_file(source), names, in_shapes, source)
        origin = {"kind": "sample", "file": os.path.basename(source)} if args.sample_input else {"kind": "given"}
    feeds = dict(zip(names, arrays))
    if args.make_inputs:
        np.savez(os.path.join(args.out, "inputs.npz"), **feeds)
        save_json_arrays(os.path.join(args.out, "inputs.json"), feeds)
    results = torch_models.run(model, arrays, args.input_shape)
    out_names = csv(args.output_names) or [f"output_{i}" for i in range(len(results))]
    outputs = dict(zip(out_names, results))
    np.savez(os.path.join(args.out, "outputs.npz"), **outputs)
    info = {"inputs": [{"name": n, "shape": list(a.shape), "dtype": a.dtype.name, "fed_shape": list(a.shape)}
                       for n, a in feeds.items()],
            "outputs": [{"name": n, "shape": list(v.shape), "dtype": v.dtype.name} for n, v in outputs.items()],
            "origin": origin, "layout": "NCHW (PyTorch)", "source_kind": kind}
    write_json(os.path.join(args.out, "run.json"), info)
    step_done(args.out, ["outputs.npz"], **info)


if __name__ == "__main__":
    main()
