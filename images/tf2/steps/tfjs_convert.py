"""Run tensorflowjs_converter for one FROM -> TO pair of its table, with its own flag names.

    tfjs_convert.py --from F --to T --input PATH --out DIR [converter flags]
Writes the converter's output into DIR (model.json + shards, model.h5, or keras_saved_model/).
"""

import argparse
import json
import os
import shutil
import sys
import tempfile

from common import fail, first_line, reject, run_forked, step_done

# flags passed through unchanged (value flags)
VALUE_FLAGS = ("signature_name", "saved_model_tags", "weight_shard_size_bytes", "output_node_names", "metadata")
BOOL_FLAGS = ("strip_debug_ops", "control_flow_v2", "use_structured_outputs_names")
QUANT_FLAGS = ("quantize_float16", "quantize_uint8", "quantize_uint16")
OUTPUT_NAME = {"keras": "model.h5", "keras_saved_model": "keras_saved_model"}
INPUT_FORMAT = {"keras2": "keras"}  # the keras3 stack's Keras 2 HDF5 translation is a Keras file to the converter


def converter_argv(args):
    argv = ["tensorflowjs_converter", f"--input_format={INPUT_FORMAT.get(args.source, args.source)}", f"--output_format={args.target}"]
    for name in VALUE_FLAGS:
        value = getattr(args, name)
        if value is not None:
            argv.append(f"--{name}={value}")
    for name in BOOL_FLAGS:
        value = getattr(args, name)
        if value is not None:
            argv.append(f"--{name}={'True' if value.lower() == 'true' else 'False'}")
    for name in QUANT_FLAGS:
        value = getattr(args, name)
        if value is None or value.lower() == "false":
            continue
        argv.append(f"--{name}" if value.lower() == "true" else f"--{name}={value}")
    return argv


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--from", dest="source", required=True)
    p.add_argument("--to", dest="target", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--out", required=True)
    for name in VALUE_FLAGS + BOOL_FLAGS + QUANT_FLAGS:
        p.add_argument("--" + name)
    p.add_argument("--base_model")
    p.add_argument("--base_layer")
    args = p.parse_args()
    if (args.base_model is None) != (args.base_layer is None):
        reject("--base_model and --base_layer go together")
    staging = os.path.join(args.out, "converted")
    target = os.path.join(staging, OUTPUT_NAME.get(args.target, ""))
    os.makedirs(staging)
    # positionals first: a bare --quantize_* flag takes an optional value and would swallow the next word
    base = converter_argv(args)
    argv = base[:3] + [args.input, target.rstrip("/")] + base[3:]
    print("running: " + " ".join(argv), flush=True)
    # the converter runs in a forked copy of this step (the warm worker's TensorFlow is imported already), not a new
    # interpreter. TensorFlow's oneDNN rewrites (on by default on x86 CPUs with AVX512_VNNI, AVX512_BF16 or AMX) would
    # fuse Sigmoid and Tanh into MatMul, and the TF.js runtime has no fused tanh: the tf2 stack's environment turns
    # them off (stack.json), before TensorFlow is imported, for the same graph on every host, one TF.js runs
    log_path = os.path.join(tempfile.gettempdir(), "tensorflowjs_converter.log")
    code = run_forked(lambda: run_converter(argv[1:]), "tensorflowjs_converter", log_path)
    with open(log_path, errors="replace") as fh:
        output = fh.read()
    sys.stderr.write(output)
    if code != 0:
        lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
        keys = ("Unsupported", "Error", "error:", "not supported")
        detail = next((ln for ln in reversed(lines) if any(k in ln for k in keys)), lines[-1] if lines else "")
        fail(f"tensorflowjs_converter failed: {detail}")
    artifacts = []
    for name in sorted(os.listdir(staging)):
        shutil.move(os.path.join(staging, name), os.path.join(args.out, name))
        artifacts.append(name)
    os.rmdir(staging)
    if "model.json" in artifacts:  # the model first, then its shards
        artifacts.remove("model.json")
        artifacts.insert(0, "model.json")
    info = {"converter_argv": base}
    if "model.json" in artifacts:
        with open(os.path.join(args.out, "model.json")) as fh:
            doc = json.load(fh)
        info.update(format=doc.get("format"), shards=sum(len(g["paths"]) for g in doc.get("weightsManifest", [])),
                    quantization=sorted({w.get("quantization", {}).get("dtype", "float32")
                                         for g in doc.get("weightsManifest", []) for w in g["weights"]}))
        dynamic = dynamic_ops(doc)
        if dynamic:  # say so where TF.js users look: the model's own metadata
            info["dynamic_ops"] = dynamic
            doc.setdefault("userDefinedMetadata", {})["orchestrator"] = {
                "execution": "executeAsync", "why": f"dynamic ops: {', '.join(dynamic)}"}
            with open(os.path.join(args.out, "model.json"), "w") as fh:
                json.dump(doc, fh)
    if args.base_model:
        info["merged"] = merge_under_base(os.path.join(args.out, "model.h5"), args.base_model, args.base_layer)
    import tensorflowjs

    step_done(args.out, artifacts, tensorflowjs=tensorflowjs.__version__, **info)


def run_converter(arguments):
    """tensorflowjs_converter ARGUMENTS, in this process (its console script does the same)."""
    from tensorflowjs.converters import converter

    converter.convert(arguments)


# ops TF.js runs only with executeAsync(): control flow and ops whose output size depends on values
DYNAMIC_OPS = ("Merge", "Switch", "Enter", "Exit", "NextIteration", "LoopCond", "If", "StatelessIf", "While",
               "StatelessWhile", "NonMaxSuppressionV2", "NonMaxSuppressionV3", "NonMaxSuppressionV4",
               "NonMaxSuppressionV5", "Where", "ListDiff", "TensorArrayV3")


def dynamic_ops(doc):
    """The dynamic ops of a graph model.json (its graph and its functions), sorted."""
    topology = doc.get("modelTopology") or {}
    nodes = list(topology.get("node", []))
    for fn in (topology.get("library") or {}).get("function", []):
        nodes += fn.get("nodeDef", [])
    return sorted({n.get("op") for n in nodes if n.get("op") in DYNAMIC_OPS})


def merge_under_base(head_path, base_path, layer_name):
    """Replace the head at head_path by Model(base.input, head(base.get_layer(layer_name).output))."""
    import tensorflow as tf

    from models import load_keras

    base, head = load_keras(base_path), load_keras(head_path)
    try:
        layer = base.get_layer(layer_name)
    except ValueError:
        names = [ly.name for ly in base.layers]
        reject(f"{base_path}: no layer '{layer_name}' (layers: {', '.join(names[:8])}"
               f"{', ...' if len(names) > 8 else ''})")
    feature = tuple(layer.output.shape[1:])
    wanted = tuple(head.inputs[0].shape[1:])
    if len(head.inputs) != 1 or feature != wanted:
        reject(f"the head's input {list(head.inputs[0].shape)} does not fit the output of '{layer_name}' in "
               f"{os.path.basename(base_path)}, {list(layer.output.shape)}")
    try:
        merged = tf.keras.Model(base.input, head(layer.output), name=f"{base.name}_{head.name}")
    except Exception as exc:
        reject(f"cannot put the head on '{layer_name}': {first_line(exc)}")
    merged.save(head_path, save_format="h5")
    return {"base_model": os.path.basename(base_path), "base_layer": layer_name, "feature_shape": list(feature),
            "inputs": [list(t.shape) for t in merged.inputs], "outputs": [list(t.shape) for t in merged.outputs]}


if __name__ == "__main__":
    main()
