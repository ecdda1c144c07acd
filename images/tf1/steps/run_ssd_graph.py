# -*- coding: utf-8 -*-
"""Verification reference for `convert ssd`: run the exported tflite_graph.pb in TF1 and keep the raw
outputs (box encodings, class predictions), the tensors the TFLite model is compared on.

    run_ssd_graph.py --input DIR/tflite_graph.pb --out OUT --plan JSON
Inputs follow the plan's distributions (verify_io), mapped onto the uint8 grid of a normalized image
((q - 128) / 127, clipped to [-1, 1]), so a uint8 model sees exactly the same values. The perturbed run is the
same graph with TF's graph optimizations off.
"""
from __future__ import print_function

import argparse
import json
import os

import numpy as np

import verify_io
from step_sdk import reject, runner_done

NAMES = {"raw_outputs/box_encodings": "box_encodings", "raw_outputs/class_predictions": "class_predictions"}


def on_grid(x):
    q = np.clip(np.round(np.clip(x, -1.0, 1.0) * 127.0 + 128.0), 0, 255)
    return ((q - 128.0) / 127.0).astype(np.float32)


def session(graph_def, optimize):
    import tensorflow as tf
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    config = tf.ConfigProto()
    if not optimize:
        config.graph_options.rewrite_options.disable_meta_optimizer = True
        config.graph_options.optimizer_options.opt_level = tf.OptimizerOptions.L0
    return tf.Session(graph=graph, config=config)


def run_all(sess, input_array, batch):
    outputs = dict((v, []) for v in NAMES.values())
    for x in batch:
        fetched = sess.run([n + ":0" for n in NAMES], {input_array + ":0": x})
        for n, v in zip(NAMES, fetched):
            outputs[NAMES[n]].append(v)
    return dict((k, np.stack(v)) for k, v in outputs.items())


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--input", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--plan")
    p.add_argument("--format", default="ssd_graph")
    args = p.parse_args()
    meta = json.load(open(os.path.join(os.path.dirname(args.input), "ssd.json")))
    shape = meta["input_shape"]
    spec = verify_io.InputSpec(meta["input_array"], shape, "float32")
    try:
        batches, groups = verify_io.make_batches([spec], verify_io.read_plan(args.plan), grid=on_grid)
    except verify_io.InputError as exc:
        reject(str(exc))
    batch = batches[spec.name]

    import tensorflow as tf
    graph_def = tf.GraphDef()
    with open(args.input, "rb") as fh:
        graph_def.ParseFromString(fh.read())
    # keep only what the raw outputs need: TF itself cannot run the TFLite_Detection_PostProcess node
    graph_def = tf.graph_util.extract_sub_graph(graph_def, list(NAMES))
    outputs = run_all(session(graph_def, True), meta["input_array"], batch)
    perturbed = run_all(session(graph_def, False), meta["input_array"], batch)
    np.savez(os.path.join(args.out, "inputs.npz"), **batches)
    verify_io.save_arrays(os.path.join(args.out, "inputs.json"), batches)  # what every result runner reads
    np.savez(os.path.join(args.out, "outputs.npz"), **outputs)
    np.savez(os.path.join(args.out, "perturbed.npz"), **perturbed)
    info = {"inputs": [{"name": meta["input_array"], "shape": shape, "dtype": "float32"}],
            "outputs": [{"name": k, "shape": list(v.shape[1:]), "dtype": str(v.dtype)}
                        for k, v in sorted(outputs.items())],
            "samples": len(batch), "groups": groups, "input_specs": [spec.to_json()],
            "grid": "uint8 (q-128)/127", "perturbation": "TF graph optimizations off", "logits": {}}
    runner_done(args.out, info)


if __name__ == "__main__":
    main()
