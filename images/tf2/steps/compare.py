"""Compare reference outputs with a converted model's outputs on the same inputs.

    compare.py --ref REF_DIR --got GOT_DIR --out DIR --mode none|float16|dynamic|int8 [--tolerance T]
Each output passes when max|ref - got| / max|ref| <= tolerance (the output's scale: its largest magnitude).
Writes DIR/verification.json; exits 0 whatever the verdict (the host decides what a failure means).
"""

import argparse
import json
import os

import numpy as np

from common import load_array_file, step_done, write_json

# max |error| relative to the output's scale, by quantization mode
TOLERANCES = {"none": 1e-4, "float16": 1e-2, "dynamic": 5e-2, "int8": 1.5e-1, "int8-full": 1.5e-1, "uint8": 1.5e-1,
              # TF.js weight quantization (--quantize_float16/uint16/uint8): activations stay float32
              "weights_float16": 1e-2, "weights_uint16": 1e-3, "weights_uint8": 1e-1}
# where the converted model reports its outputs' quantization step: max |error| in steps. TOCO fuses and rounds
# differently from TF's fake-quant graph: on random-weight SSDs, up to 6 steps (90% of values within 2).
STEP_TOLERANCES = {"uint8": 8.0, "int8": 8.0, "int8-full": 8.0}


def outputs_of(folder):
    """A runner's outputs: outputs.npz (Python stacks) or outputs.json (the TF.js stack)."""
    npz = os.path.join(folder, "outputs.npz")
    return load_array_file(npz if os.path.exists(npz) else os.path.join(folder, "outputs.json"))


def pair(ref, got):
    """[(ref_name, got_name)] and the method used: by name, by order, or by unique shape."""
    if set(ref) == set(got):
        return [(n, n) for n in ref], "name"
    if len(ref) != len(got):
        return None, f"count mismatch: {len(ref)} reference output(s), {len(got)} converted"
    by_order = list(zip(ref, got))
    if all(ref[a].shape == got[b].shape for a, b in by_order):
        return by_order, "order"
    shapes = {}
    for name, arr in got.items():
        shapes.setdefault(arr.shape, []).append(name)
    if all(len(v) == 1 for v in shapes.values()) and all(ref[n].shape in shapes for n in ref):
        return [(n, shapes[ref[n].shape][0]) for n in ref], "shape"
    return by_order, "order"


def compare_one(name, got_name, r, g, tol, step=None):
    entry = {"name": name, "result_name": got_name, "shape": list(r.shape), "result_shape": list(g.shape)}
    if r.shape != g.shape:
        return dict(entry, passed=False, reason="shape mismatch")
    r64, g64 = r.astype(np.float64), g.astype(np.float64)
    if not np.all(np.isfinite(g64)):
        return dict(entry, passed=False, reason="non-finite values in the converted output")
    scale = float(np.max(np.abs(r64))) if r64.size else 0.0
    err = float(np.max(np.abs(r64 - g64))) if r64.size else 0.0
    rel = err / scale if scale > 0 else (0.0 if err == 0 else float("inf"))
    entry.update(max_abs_err=err, max_rel_err=rel, scale=scale,
                 mean_abs_err=float(np.mean(np.abs(r64 - g64))) if r64.size else 0.0)
    if step:  # quantized output: the tolerance is in quantization steps
        entry.update(quant_step=step, max_err_steps=err / step, passed=bool(err / step <= tol))
        return entry
    return dict(entry, passed=bool(rel <= tol))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ref", required=True)
    p.add_argument("--got", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--mode", default="none")
    p.add_argument("--tolerance", type=float)
    args = p.parse_args()
    ref, got = outputs_of(args.ref), outputs_of(args.got)
    with open(os.path.join(args.got, "run.json")) as fh:
        steps = ((json.load(fh).get("tensors") or {}).get("quant_scales") or {})
    in_steps = args.mode in STEP_TOLERANCES and bool(steps)
    if in_steps:
        tol = args.tolerance if args.tolerance is not None else STEP_TOLERANCES[args.mode]
        metric = "max|ref-got| in quantization steps of the converted output"
    else:
        tol = args.tolerance if args.tolerance is not None else TOLERANCES.get(args.mode, TOLERANCES["none"])
        metric = "max|ref-got| / max|ref| per output"
    pairs, method = pair(ref, got)
    result = {"mode": args.mode, "tolerance": tol, "metric": metric, "pairing": method}
    if pairs is None:
        result.update(passed=False, outputs=[], reason=method)
    else:
        outs = [compare_one(a, b, ref[a], got[b], tol, steps.get(b) if in_steps else None) for a, b in pairs]
        result.update(passed=all(o["passed"] for o in outs), outputs=outs)
    write_json(os.path.join(args.out, "verification.json"), result)
    step_done(args.out, ["verification.json"], passed=result["passed"])


if __name__ == "__main__":
    main()
