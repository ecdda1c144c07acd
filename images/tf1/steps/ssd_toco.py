# -*- coding: utf-8 -*-
"""Step 2 of `convert ssd` (the default converter): TOCO on tflite_graph.pb.

    ssd_toco.py --input DIR/tflite_graph.pb --out OUT [--quantize none|uint8] [--mean_values 128]
                [--std_dev_values 127] [--default_ranges_min X --default_ranges_max Y] [--graphviz true]
Reads ssd.json beside the graph. Writes model.tflite (and model.dot, model.svg with --graphviz).
"""
from __future__ import print_function

import argparse
import json
import os
import subprocess

from step_sdk import boolean, fail, first_line, reject, step_done


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--input", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--quantize", default="none")
    p.add_argument("--mean_values", type=float, default=128.0)
    p.add_argument("--std_dev_values", type=float, default=127.0)
    p.add_argument("--default_ranges_min", type=float)
    p.add_argument("--default_ranges_max", type=float)
    p.add_argument("--graphviz", default="false")
    args = p.parse_args()
    meta = json.load(open(os.path.join(os.path.dirname(args.input), "ssd.json")))

    import tensorflow as tf

    def converter():
        conv = tf.lite.TFLiteConverter.from_frozen_graph(
            args.input, [meta["input_array"]], meta["output_arrays"],
            input_shapes={meta["input_array"]: meta["input_shape"]})
        conv.allow_custom_ops = True
        if args.quantize == "uint8":
            conv.inference_type = tf.uint8
            conv.quantized_input_stats = {meta["input_array"]: (args.mean_values, args.std_dev_values)}
            if args.default_ranges_min is not None or args.default_ranges_max is not None:
                if args.default_ranges_min is None or args.default_ranges_max is None:
                    reject("--default_ranges_min and --default_ranges_max go together")
                conv.default_ranges_stats = (args.default_ranges_min, args.default_ranges_max)
        return conv

    if args.quantize == "uint8" and not meta["quantization_aware"] and args.default_ranges_min is None:
        reject("the exported graph was trained without quantization (no graph_rewriter { quantization } in "
               "pipeline.config), so it has no ranges for uint8; give --default_ranges_min and "
               "--default_ranges_max (e.g. 0 and 6), or retrain with quantization")
    try:
        flatbuffer = converter().convert()
    except Exception as exc:
        text = str(exc)
        if "Array" in text and "min/max" in text or "default_ranges" in text:
            reject("%s: a tensor has no quantization range; give --default_ranges_min/--default_ranges_max "
                   "(%s)" % (args.input, first_line(exc)))
        lines = [ln for ln in text.splitlines() if ln.strip()]
        detail = next((ln for ln in lines if "rror" in ln), lines[-1] if lines else type(exc).__name__)
        fail("TOCO failed: " + detail.strip())
    with open(os.path.join(args.out, "model.tflite"), "wb") as fh:
        fh.write(flatbuffer)
    artifacts = ["model.tflite"]
    if boolean(args.graphviz):
        conv = converter()
        conv.output_format = tf.lite.constants.GRAPHVIZ_DOT
        dot = conv.convert()
        with open(os.path.join(args.out, "model.dot"), "wb") as fh:
            fh.write(dot)
        subprocess.check_call(["dot", "-Tsvg", os.path.join(args.out, "model.dot"), "-o",
                               os.path.join(args.out, "model.svg")])
        artifacts += ["model.dot", "model.svg"]
    info = {"converter": "toco", "quantize": args.quantize, "size_bytes": len(flatbuffer),
            "input_array": meta["input_array"], "output_arrays": meta["output_arrays"]}
    if args.quantize == "uint8":
        info["input_quantization"] = {"scale": 1.0 / args.std_dev_values, "zero_point": int(args.mean_values),
                                      "dtype": "uint8"}
    step_done(args.out, artifacts, **info)


if __name__ == "__main__":
    main()
