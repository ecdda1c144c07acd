"""Run a JAX/Flax apply_fn for verification (the reference of the JAX routes).

    run_jax.py --format jax --input /in/model/FILE.py:build --out DIR --input_signature S [--params F]
               (--make-inputs [--seed N] [--sample_input FILE] | --inputs inputs.json)
Inputs are named input_0, ... (symbolic dimensions get size 2), outputs output_0, ... as in the SavedModel
the conversion builds. Writes inputs.npz/.json (with --make-inputs), outputs.npz and run.json.
"""

import os

import numpy as np

import jax_user
from common import load_array_file, reject, runner_arguments, save_json_arrays, step_done, write_json


def main():
    args = runner_arguments(formats=["jax"], options=("input_signature", "polymorphic_shapes", "params"))
    sigs = jax_user.signatures(args.input_signature)
    apply_fn, params, where = jax_user.build_model(args.input, args.params)
    jax_user.check_signatures(apply_fn, params, sigs, where)
    if args.make_inputs and not args.sample_input:
        rng = np.random.default_rng(args.seed)
        feeds = {}
        for s in sigs:
            if s.dtype.startswith(("float", "bfloat")):
                feeds[s.name] = rng.uniform(-1.0, 1.0, s.concrete).astype("float32" if s.dtype == "bfloat16" else s.dtype)
            elif s.dtype == "bool":
                feeds[s.name] = rng.random(s.concrete) < 0.5
            else:
                feeds[s.name] = rng.integers(0, 10, s.concrete).astype(s.dtype)
        origin = {"kind": "random", "seed": args.seed, "float_range": [-1.0, 1.0], "int_range": [0, 10],
                  "symbolic_dimension_size": jax_user.SYMBOLIC_SIZE}
    else:
        source = args.sample_input or args.inputs
        given = load_array_file(source)
        arrays = [given[s.name] for s in sigs] if isinstance(given, dict) and all(s.name in given for s in sigs) \
            else (list(given.values()) if isinstance(given, dict) else list(given))
        if len(arrays) != len(sigs):
            reject(f"{source}: holds {len(arrays)} array(s) for {len(sigs)} input signature(s)")
        feeds = {s.name: np.asarray(a).astype(s.dtype) for s, a in zip(sigs, arrays)}
        origin = {"kind": "sample", "file": os.path.basename(source)} if args.sample_input else {"kind": "given"}
    if args.make_inputs:
        np.savez(os.path.join(args.out, "inputs.npz"), **feeds)
        save_json_arrays(os.path.join(args.out, "inputs.json"), feeds)
    results = jax_user.flat_outputs(apply_fn(params, *[feeds[s.name] for s in sigs]))
    outputs = {f"output_{i}": np.asarray(v, dtype=np.float32) if v.dtype.kind == "f" else v
               for i, v in enumerate(results)}
    np.savez(os.path.join(args.out, "outputs.npz"), **outputs)
    info = {"inputs": [{"name": n, "shape": list(a.shape), "dtype": a.dtype.name, "fed_shape": list(a.shape)}
                       for n, a in feeds.items()],
            "outputs": [{"name": n, "shape": list(v.shape), "dtype": v.dtype.name} for n, v in outputs.items()],
            "origin": origin, "source": where}
    write_json(os.path.join(args.out, "run.json"), info)
    step_done(args.out, ["outputs.npz"], **info)


if __name__ == "__main__":
    main()
