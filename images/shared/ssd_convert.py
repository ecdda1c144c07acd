# -*- coding: utf-8 -*-
"""What the two SSD converter steps share (tf1's TOCO and tf2's MLIR converter): their arguments, the exported
graph's ssd.json, the uint8 settings of the v1 converter API, and reading a converter's error. Python 2 and 3."""
from __future__ import print_function

import argparse
import json
import os

from step_sdk import first_line, reject


def arguments(extra=()):
    """--input DIR/tflite_graph.pb --out OUT [--quantize none|uint8] [--mean_values 128] [--std_dev_values 127]
    [--default_ranges_min X --default_ranges_max Y], then `extra` (name, default) string options."""
    p = argparse.ArgumentParser()
    p.add_argument("--input", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--quantize", default="none")
    p.add_argument("--mean_values", type=float, default=128.0)
    p.add_argument("--std_dev_values", type=float, default=127.0)
    p.add_argument("--default_ranges_min", type=float)
    p.add_argument("--default_ranges_max", type=float)
    for name, default in extra:
        p.add_argument("--" + name, default=default)
    return p.parse_args()


def graph_facts(args):
    """ssd.json, written by ssd_export beside the graph: input and output arrays, shape, quantization-aware."""
    with open(os.path.join(os.path.dirname(args.input), "ssd.json")) as fh:
        return json.load(fh)


def configure(conv, uint8_type, args, meta):
    """The v1 converter's settings for the SSD graph (custom post-processing op; uint8 inference when asked)."""
    conv.allow_custom_ops = True
    if args.quantize != "uint8":
        return conv
    if not meta["quantization_aware"] and args.default_ranges_min is None:
        reject("the exported graph was trained without quantization (no graph_rewriter { quantization } in "
               "pipeline.config), so it has no ranges for uint8; give --default_ranges_min and "
               "--default_ranges_max (e.g. 0 and 6), or retrain with quantization")
    if (args.default_ranges_min is None) != (args.default_ranges_max is None):
        reject("--default_ranges_min and --default_ranges_max go together")
    conv.inference_type = uint8_type
    conv.quantized_input_stats = {meta["input_array"]: (args.mean_values, args.std_dev_values)}
    if args.default_ranges_min is not None:
        conv.default_ranges_stats = (args.default_ranges_min, args.default_ranges_max)
    return conv


def converter_error(args, exc):
    """The converter's failure as one line (a missing quantization range is the input's fault)."""
    text = str(exc)
    if "Array" in text and "min/max" in text or "default_ranges" in text:
        reject("%s: a tensor has no quantization range; give --default_ranges_min/--default_ranges_max (%s)"
               % (args.input, first_line(exc)))
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return next((ln for ln in lines if "rror" in ln), lines[-1] if lines else type(exc).__name__).strip()


def info(args, meta, converter, size):
    facts = {"converter": converter, "quantize": args.quantize, "size_bytes": size,
             "input_array": meta["input_array"], "output_arrays": meta["output_arrays"]}
    if args.quantize == "uint8":
        facts["input_quantization"] = {"scale": 1.0 / args.std_dev_values, "zero_point": int(args.mean_values),
                                       "dtype": "uint8"}
    return facts
