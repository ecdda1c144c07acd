"""What every TFLite-converter step shares (tf2's to_tflite.py for Keras 2 / SavedModels / frozen graphs, keras3's
for Keras 3 and tf_keras 2.16+ files): the command line, calibration samples, the quantization settings, and
writing the flatbuffer with step.json. A stack's own script only says how to make the converter from its input.

    SCRIPT --from FORMAT --input PATH --out DIR [--quantize none|float16|dynamic|int8 [--calibration FILE_OR_DIR]
           [--inference_input_type T] [--inference_output_type T]] [--signature_name S] [--saved_model_tags T,..]
           [--input_arrays ..] [--output_arrays ..] [--input_shapes ..] [--allow_custom_ops true|false]
           [--allow_flex_ops true|false]
Without --allow_flex_ops the converter may use TFLite builtins only, so the model runs in a plain interpreter; the
op set of the result (builtin, custom, Flex) goes into step.json.
"""

import argparse
import glob
import os
import re

from common import boolean, fail, load_array_file, reject, step_done
from keras_savedmodel import COUNTS, quick_keras_saves


def arguments():
    p = argparse.ArgumentParser()
    p.add_argument("--from", dest="source", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--quantize", default="none", choices=["none", "float16", "dynamic", "int8"])
    p.add_argument("--calibration")
    p.add_argument("--inference_input_type", default="int8")
    p.add_argument("--inference_output_type", default="int8")
    p.add_argument("--signature_name", default="serving_default")
    p.add_argument("--saved_model_tags", default="serve")
    p.add_argument("--input_arrays")
    p.add_argument("--output_arrays")
    p.add_argument("--input_shapes")
    p.add_argument("--allow_custom_ops", default="false")
    p.add_argument("--allow_flex_ops", default="false")
    p.add_argument("--float_reference", default="true",
                   help="for a quantized conversion, also write its float twin (the report's per-layer errors)")
    return p.parse_args()


def calibration_samples(path, specs):
    """A list of samples; each sample is a list of arrays in input order, each with a batch axis of 1."""
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, "*.npy")) + glob.glob(os.path.join(path, "*.npz")))
        if not files:
            reject(f"{path}: calibration folder holds no .npy or .npz files")
        loaded = [load_array_file(f) for f in files]
    else:
        loaded = [load_array_file(path)]
    samples = []
    for item in loaded:
        if isinstance(item, dict):
            if all(s.name in item for s in specs):
                arrays = [item[s.name] for s in specs]
            elif len(item) == len(specs):
                arrays = list(item.values())
            else:
                reject(f"{path}: calibration arrays ({', '.join(item)}) do not match the model inputs "
                       f"({', '.join(s.name for s in specs)})")
        else:
            if len(specs) != 1:
                reject(f"{path}: the model has {len(specs)} inputs; give calibration as .npz with one array each")
            arrays = item
        per_input = []
        for spec, arr in zip(specs, arrays):
            rank = len(spec.shape)
            if arr.ndim == rank:  # samples along the batch axis
                per_input.append([arr[i:i + 1] for i in range(arr.shape[0])])
            elif arr.ndim == rank - 1:  # one sample without its batch axis
                per_input.append([arr[None]])
            else:
                reject(f"{path}: calibration array of shape {list(arr.shape)} does not fit input '{spec.name}' "
                       f"of shape {spec.shape}")
        for group in zip(*per_input):
            samples.append([g.astype(spec.dtype) for g, spec in zip(group, specs)])
    if not samples:
        reject(f"{path}: no calibration samples")
    return samples


def quantize(converter, args, specs, by_name=False):
    """The converter's settings for --quantize; returns the calibration samples used (int8), else []."""
    import tensorflow as tf

    converter.allow_custom_ops = boolean(args.allow_custom_ops)
    flex = [tf.lite.OpsSet.SELECT_TF_OPS] if boolean(args.allow_flex_ops) else []
    if flex:
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS] + flex
    if args.quantize == "none":
        return []
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if args.quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if args.quantize != "int8":
        return []
    if not args.calibration:
        reject("--quantize int8 needs --calibration (representative inputs)")
    samples = calibration_samples(args.calibration, specs)
    fed = [{s.name: a for s, a in zip(specs, sample)} for sample in samples] if by_name else samples
    converter.representative_dataset = lambda: iter(fed)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8] + flex
    types = {"int8": tf.int8, "uint8": tf.uint8, "float32": tf.float32}
    converter.inference_input_type = types[args.inference_input_type]
    converter.inference_output_type = types[args.inference_output_type]
    return samples


def needs_flex(message):
    """The converter's ERROR_NEEDS_FLEX_OPS ("TF Select ops: Erf, ResizeBicubic") said plainly, else None."""
    from tflite_runtime import FLEX_HINT

    listed = re.search(r"TF Select ops: ([\w, ]+)", message)
    if not listed:
        return None
    ops = ", ".join("Flex" + op.strip() for op in listed.group(1).split(",") if op.strip())
    return (f"ops with no TFLite builtin would need Flex (TF Select) ops ({ops}), which a plain TFLite/LiteRT "
            f"interpreter cannot run; {FLEX_HINT}")


FLOAT_REFERENCE = "float_reference.tflite"  # a quantized conversion's float twin, beside it (not an artifact)


def float_reference(make_converter, args):
    """For a quantized conversion: the same model converted without quantization, written beside it for the report's
    per-layer error table (report_model.py); what went wrong instead, as a note (it never fails the step)."""
    import tensorflow as tf

    try:
        converter = make_converter()
        if boolean(args.allow_flex_ops):
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
        converter.allow_custom_ops = boolean(args.allow_custom_ops)
        with quick_keras_saves():
            flatbuffer = converter.convert()
        with open(os.path.join(args.out, FLOAT_REFERENCE), "wb") as fh:
            fh.write(flatbuffer)
        return None
    except Exception as exc:  # the quantized model is the result; its float twin is only for the report
        return "no float reference for the per-layer errors: " + str(exc).strip().splitlines()[0][:200]


def convert(converter, args, samples, make_float=None, **info):
    """Run the converter, write model.tflite and step.json (with the model's tensors); return its path.
    `make_float`: makes a fresh converter of the same model, for a quantized conversion's float twin. A Keras 2
    model's saves inside the converter (keras_savedmodel.py) are counted in step.json's "keras_saves"."""
    from tflite_runtime import TFLiteModel, op_set

    COUNTS.update(quick=0, usual=0)
    try:
        with quick_keras_saves():
            flatbuffer = converter.convert()
    except Exception as exc:  # the converter's own message is the useful part
        msg = str(exc).strip().splitlines()
        detail = next((ln.strip() for ln in msg if "error" in ln.lower()), msg[0] if msg else type(exc).__name__)
        fail(f"the TFLite converter failed: {needs_flex(str(exc)) or detail}")
    path = os.path.join(args.out, "model.tflite")
    with open(path, "wb") as fh:
        fh.write(flatbuffer)
    tfl = TFLiteModel(path, logits=False)
    if make_float is not None and args.quantize != "none" and boolean(getattr(args, "float_reference", "true")):
        note = float_reference(make_float, args)
        if note:
            info["float_reference"] = note
    if COUNTS["quick"] or COUNTS["usual"]:  # how the converter saved a Keras 2 model: "usual" is the slow way
        info["keras_saves"] = dict(COUNTS)
    step_done(args.out, ["model.tflite"], quantize=args.quantize, size_bytes=len(flatbuffer),
              calibration_samples=len(samples), tflite=tfl.details(), op_set=op_set(tfl.op_counts()), **info)
    return path
