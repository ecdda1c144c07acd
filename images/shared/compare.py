"""Compare reference outputs with a converted model's outputs on the same inputs (see parity.py for the criterion).

    compare.py --ref REF_DIR --got GOT_DIR --out DIR --mode none|float16|dynamic|int8|... [--tolerance T]
REF_DIR holds the reference run (outputs, perturbed outputs, logits, run.json with the input groups), GOT_DIR the
converted model's run on the same inputs. Writes DIR/verification.json; exits 0 whatever the verdict (the host
decides what a failure means).
"""

import argparse
import json
import os

import parity
from common import load_array_file, step_done, write_json


def arrays(folder, stem):
    """A runner's arrays: STEM.npz (Python stacks) or STEM.json (the TF.js stack); {} when absent."""
    for ext in (".npz", ".json"):
        path = os.path.join(folder, stem + ext)
        if os.path.exists(path):
            return load_array_file(path)
    return {}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--ref", required=True)
    p.add_argument("--got", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--mode", default="none")
    p.add_argument("--tolerance", type=float)
    args = p.parse_args()
    with open(os.path.join(args.ref, "run.json")) as fh:
        ref_info = json.load(fh)
    with open(os.path.join(args.got, "run.json")) as fh:
        got_info = json.load(fh)
    steps = (got_info.get("tensors") or {}).get("quant_scales") or {}
    result = parity.judge(arrays(args.ref, "outputs"), arrays(args.got, "outputs"), ref_info["groups"], args.mode,
                          args.tolerance, perturbed=arrays(args.ref, "perturbed"), steps=steps,
                          ref_logits=arrays(args.ref, "logits"), got_logits=arrays(args.got, "logits"),
                          perturbed_logits=arrays(args.ref, "perturbed_logits"))
    result["perturbation"] = ref_info.get("perturbation")
    write_json(os.path.join(args.out, "verification.json"), result)
    step_done(args.out, ["verification.json"], passed=result["passed"])


if __name__ == "__main__":
    main()
