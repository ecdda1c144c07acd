# -*- coding: utf-8 -*-
"""Verification reference for `convert ssd`: run the exported tflite_graph.pb in TF1 and keep the raw
outputs (box encodings, class predictions), the tensors the TFLite model is compared on.

    run_ssd_graph.py --input DIR/tflite_graph.pb --out OUT --make-inputs [--seed N] [--sample_input F.npy]
Inputs are normalized images in [-1, 1] on the uint8 grid ((q - 128) / 127), so a uint8 model sees exactly
the same values.
"""
from __future__ import print_function

import argparse
import json
import os

import numpy as np

from common import first_line, reject, step_done, write_json

NAMES = {"raw_outputs/box_encodings": "box_encodings", "raw_outputs/class_predictions": "class_predictions"}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--input", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--make-inputs", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sample_input")
    p.add_argument("--format", default="ssd_graph")
    args = p.parse_args()
    meta = json.load(open(os.path.join(os.path.dirname(args.input), "ssd.json")))
    shape = meta["input_shape"]
    if args.sample_input:
        try:
            x = np.load(args.sample_input, allow_pickle=False)
        except Exception as exc:
            reject("%s: not a readable .npy (%s)" % (args.sample_input, first_line(exc)))
        if x.ndim == 3:
            x = x[None]
        if list(x.shape) != shape:
            reject("%s: array of shape %s does not fit the SSD input of shape %s" % (
                args.sample_input, list(x.shape), shape))
        x = x.astype(np.float32)
        origin = {"kind": "sample", "file": os.path.basename(args.sample_input)}
    else:
        rng = np.random.RandomState(args.seed)
        x = ((rng.randint(0, 256, shape) - 128) / 127.0).astype(np.float32)
        origin = {"kind": "random", "seed": args.seed, "float_range": [-1.0, 1.0], "grid": "uint8 (q-128)/127"}

    import tensorflow as tf
    graph_def = tf.GraphDef()
    with open(args.input, "rb") as fh:
        graph_def.ParseFromString(fh.read())
    # keep only what the raw outputs need: TF itself cannot run the TFLite_Detection_PostProcess node
    graph_def = tf.graph_util.extract_sub_graph(graph_def, list(NAMES))
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    with tf.Session(graph=graph) as sess:
        fetched = sess.run([n + ":0" for n in NAMES], {meta["input_array"] + ":0": x})
    outputs = dict((NAMES[n], v) for n, v in zip(NAMES, fetched))
    np.savez(os.path.join(args.out, "inputs.npz"), **{meta["input_array"]: x})
    with open(os.path.join(args.out, "inputs.json"), "w") as fh:  # what every result runner reads
        json.dump({meta["input_array"]: {"shape": list(x.shape), "dtype": "float32",
                                         "data": x.reshape(-1).tolist()}}, fh)
    np.savez(os.path.join(args.out, "outputs.npz"), **outputs)
    info = {"inputs": [{"name": meta["input_array"], "shape": shape, "dtype": "float32", "fed_shape": shape}],
            "outputs": [{"name": k, "shape": list(v.shape), "dtype": str(v.dtype)} for k, v in sorted(outputs.items())],
            "origin": origin}
    write_json(os.path.join(args.out, "run.json"), info)
    step_done(args.out, ["outputs.npz"], **info)


if __name__ == "__main__":
    main()
