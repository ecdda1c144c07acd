# -*- coding: utf-8 -*-
"""Step 2 of `convert ssd` (the default converter): TOCO on tflite_graph.pb.

    ssd_toco.py --input DIR/tflite_graph.pb --out OUT [--quantize none|uint8] [--mean_values 128]
                [--std_dev_values 127] [--default_ranges_min X --default_ranges_max Y] [--graphviz true]
Reads ssd.json beside the graph. Writes model.tflite (and model.dot, model.svg with --graphviz).
"""
from __future__ import print_function

import os
import subprocess

import ssd_convert
from step_sdk import boolean, fail, step_done


def main():
    args = ssd_convert.arguments(extra=(("graphviz", "false"),))
    meta = ssd_convert.graph_facts(args)

    import tensorflow as tf

    def converter():
        conv = tf.lite.TFLiteConverter.from_frozen_graph(
            args.input, [meta["input_array"]], meta["output_arrays"],
            input_shapes={meta["input_array"]: meta["input_shape"]})
        return ssd_convert.configure(conv, tf.uint8, args, meta)

    try:
        flatbuffer = converter().convert()
    except Exception as exc:
        fail("TOCO failed: " + ssd_convert.converter_error(args, exc))
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
    step_done(args.out, artifacts, **ssd_convert.info(args, meta, "toco", len(flatbuffer)))


if __name__ == "__main__":
    main()
