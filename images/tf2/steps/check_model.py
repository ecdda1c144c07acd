"""`orchestrator check` in the TF2 stack: which ops of a Keras model, SavedModel or frozen graph have no TFLite
builtin (the TFLite converter run with builtins only, nothing quantized, nothing written: it names the ops that would
need Flex or a custom op), or no TF.js kernel (the graph's ops against tensorflowjs' own op lists).

    check_model.py --format F --input MODEL --to tflite|tfjs_graph_model|tfjs_layers_model --out DIR [format options]
step.json info: {"ops": {op: count} (the TF graph), "flex": [...], "custom": [...], "no_tfjs_kernel": [...],
"converter_error": "..." (a failure the op lists do not explain)}
"""

import glob
import json
import os
import re

import tf_model_info
import to_tflite
from model_info import arguments, count
from step_sdk import first_line, step_done


def tf_graph(args):
    """The GraphDef the converters see: the Keras model's or the signature's concrete function, or the frozen
    graph."""
    import tensorflow as tf

    if args.format in ("keras", "keras_saved_model"):
        import models

        model = models.load_keras(args.input)
        fn = tf.function(lambda *xs: model(list(xs) if len(xs) > 1 else xs[0]))
        specs = [tf.TensorSpec(t.shape, t.dtype) for t in model.inputs]
        return fn.get_concrete_function(*specs).graph.as_graph_def()
    if args.format in ("tf_saved_model", "tf_hub"):
        from saved_model_runtime import SignatureModel

        return SignatureModel(args.input, args.saved_model_tags, args.signature_name).fn.graph.as_graph_def()
    graph_def = tf.compat.v1.GraphDef()
    with open(args.input, "rb") as fh:
        graph_def.ParseFromString(fh.read())
    return graph_def


def _listed(pattern, message):
    found = re.search(pattern, message)
    return sorted({op.strip() for op in found.group(1).split(",") if op.strip()}) if found else []


def tflite_problems(args):
    """The builtins-only conversion's verdict: (flex ops, custom ops, any other error)."""
    import tensorflow as tf

    converter, _ = to_tflite.make_converter(args)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    try:
        converter.convert()
    except Exception as exc:  # the converter says what it lacks in its message
        message = str(exc)
        flex = _listed(r"TF Select ops: ([\w, ]+)", message)
        custom = _listed(r"custom implementation[^:]*: ([\w, ]+)", message)
        return flex, custom, "" if flex or custom else first_line(exc)
    return [], [], ""


def tfjs_kernels():
    import tensorflowjs

    folder = os.path.join(os.path.dirname(tensorflowjs.__file__), "op_list")
    names = set()
    for path in glob.glob(os.path.join(folder, "*.json")):
        with open(path) as fh:
            names.update(entry["tfOpName"] for entry in json.load(fh))
    return names


def main():
    args = arguments("signature_name", "saved_model_tags", "input_arrays", "output_arrays", "input_shapes")
    args.source = args.format
    ops = tf_model_info.graph_ops(tf_graph(args))
    info = {"ops": count(ops), "flex": [], "custom": [], "no_tfjs_kernel": [], "converter_error": ""}
    if args.to == "tflite":
        info["flex"], info["custom"], info["converter_error"] = tflite_problems(args)
    elif args.to.startswith("tfjs"):
        kernels = tfjs_kernels()
        info["no_tfjs_kernel"] = sorted({op for op in ops if op not in kernels})
    step_done(args.out, [], **info)


if __name__ == "__main__":
    main()
