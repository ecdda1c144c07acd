"""ONNX -> TFLite or SavedModel with onnx2tf, checked against onnxruntime, with onnx2tf's remedies when the
default conversion crashes or computes something else.

    onnx2tf_convert.py --input model.onnx --out DIR --to tflite|tf_saved_model
        [--quantize none|float16|dynamic|int8|int8-full] [--calibration FILE.npy|FILE.npz|DIR] [--mean M] [--std S]
        [--keep_nchw all|NAMES] [--param_replacement FILE.json] [--remedies auto|off] [--allow_flex_ops true|false]
        [--plan JSON]

Names TensorFlow rejects (other exporters' '@', ':', spaces, ...) are made safe before onnx2tf sees the graph
(name_map); the .tflite's signature gets the user's names back, and errors and step.json speak them.
Every attempt converts in its own process; its float32 TFLite model runs beside onnxruntime on the inputs of the
verification's plan (several distributions, the user's samples; inputs transposed NCHW -> NHWC where onnx2tf
changed the layout) and is judged by parity.judge, the criterion of the final verification (saturated outputs
judged on their logits, the tolerance grounded in onnxruntime's own float32 noise). An attempt whose .tflite holds
Flex (TF Select) ops fails unless --allow_flex_ops: a plain TFLite/LiteRT interpreter cannot run it. The first
attempt that passes is kept. Order: onnx2tf's defaults; the graph rewritten where onnx_rewrites knows onnx2tf goes
wrong (torch's 5-D LRN, Erf, Resize); its per-op accuracy check (-cotof) with the automatic parameter-replacement
search (-agj) and a conversion with the JSON it found; the layout optimizations switched off (Transpose/StridedSlice
suppression); inputs kept NCHW; onnxsim run first and onnx2tf's own pass skipped; no onnxsim at all. What was tried,
and what worked (with what each rewrite changed), goes into step.json (and the manifest), with the op set of the
result (builtin, custom, Flex).
"""

import argparse
import glob
import json
import os
import re
import shutil
import sys
import tempfile

import numpy as np

import name_map
import parity
import runtimes
import verify_io
from common import boolean, csv, fail, first_line, reject, run_batch, step_done
from onnx2tf_attempt import AttemptForker
from step_sdk import oom_kills, stop_if_killed
from tflite_runtime import FLEX_HINT, op_counts, op_set

# onnx2tf downloads this sample (20 images, 128x128 RGB, values in [0, 1]) unless it sits in the working folder;
# conversions have no network, so it is written here (seeded noise): onnx2tf uses it for its own accuracy checks
# and for calibration only when no --calibration is given (which this step never allows for int8).
SAMPLE_NAME = "calibration_image_sample_data_20x128x128x3_float32.npy"
VARIANT = {"none": "float32", "float16": "float16", "dynamic": "dynamic_range_quant", "int8": "integer_quant",
           "int8-full": "full_integer_quant"}
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# absl/glog lines ("W0000 00:00:...computation_placer.cc:177] ... already registered"), Python warnings
LOG_LINE = re.compile(r"^(?:[IWEF]\d{4} \d\d:\d\d:\d\d|\S*Warning: |warnings\.warn\()")
CHECK_LINE = re.compile(r"onnx_output_name: (\S+) .*validate_result:\s+Unmatched\s+max_abs_error: ([0-9.eE+-]+)")


def parse_floats(text, flag):
    try:
        return [float(v) for v in csv(text)]
    except ValueError:
        reject(f"--{flag} '{text}' is not a comma-separated list of numbers")


def tf_layout(onnx_shape, keep):
    """The input's shape after onnx2tf: channels last for rank >= 3 unless kept NCHW."""
    if keep or len(onnx_shape) < 3:
        return list(onnx_shape)
    return [onnx_shape[i] for i in runtimes.to_last(len(onnx_shape))]


def load_images(folder, shape, mean, std):
    import tensorflow as tf

    files = sorted(f for f in glob.glob(os.path.join(folder, "*")) if f.lower().endswith(IMAGE_EXTS))
    h, w, c = shape[1], shape[2], shape[3]
    arrays = []
    for f in files:
        try:
            img = tf.io.decode_image(tf.io.read_file(f), channels=c, expand_animations=False)
        except Exception as exc:
            reject(f"{f}: not a readable image ({first_line(exc)})")
        img = tf.image.resize(tf.cast(img, tf.float32) / 255.0, (h or 224, w or 224)).numpy()
        arrays.append((img - mean) / std)
    return np.stack(arrays).astype(np.float32)


def calibration_arrays(path, model, keep_names, mean, std):
    """{input name: samples in the converted (TF) layout, normalized}."""
    mean = np.asarray(mean or [0.0], np.float32)
    std = np.asarray(std or [1.0], np.float32)
    if os.path.isdir(path):
        npys = sorted(glob.glob(os.path.join(path, "*.npy")))
        if npys:
            data = [np.stack([np.load(f, allow_pickle=False) for f in npys])]
        else:
            spec = model.inputs[0]
            if len(model.inputs) != 1 or len(spec.shape) != 4:
                reject(f"{path}: a folder of images calibrates one 4-D image input only; give an .npz per input")
            shape = tf_layout(spec.concrete(), spec.name in keep_names)
            if shape[-1] not in (1, 3, 4):
                shape = spec.concrete()
            data = load_images(path, shape, mean, std)
            if not len(data):
                reject(f"{path}: holds no .npy files and no images ({', '.join(IMAGE_EXTS)})")
            return {spec.name: data}
    elif path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
        data = [data[s.name] for s in model.inputs] if all(s.name in data for s in model.inputs) else list(data.values())
    else:
        try:
            data = [np.load(path, allow_pickle=False)]
        except Exception as exc:
            reject(f"{path}: not a readable .npy file ({first_line(exc)})")
    if len(data) != len(model.inputs):
        reject(f"{path}: holds {len(data)} array(s); the model has {len(model.inputs)} input(s)")
    result = {}
    for spec, arr in zip(model.inputs, data):
        arr = arr.astype(np.float32)
        want = spec.concrete()[1:]
        tf_want = tf_layout(spec.concrete(), spec.name in keep_names)[1:]
        if list(arr.shape[1:]) == list(tf_want):
            samples = arr
        elif list(arr.shape[1:]) == list(want):
            samples = arr.transpose(runtimes.to_last(arr.ndim)) if tf_want != want else arr
        else:
            reject(f"{path}: samples of shape {list(arr.shape[1:])} fit input '{spec.name}' {spec.shape} "
                   f"neither as given (NCHW) nor channels-last")
        if arr.ndim != len(spec.shape):
            reject(f"{path}: samples of rank {arr.ndim - 1} for input '{spec.name}' of rank {len(spec.shape) - 1}")
        result[spec.name] = ((samples - mean) / std).astype(np.float32) if mean.any() or (std != 1).any() else samples
    return result


def run_attempt(forker, name, params, work, meanwhile=None):
    """Run one onnx2tf attempt in a process of its own (forked by `forker`, an onnx2tf_attempt.AttemptForker), its
    output into NAME.log; (its output folder, exit status, log). `meanwhile` (a function) runs in this process while
    the attempt converts: the first attempt's wait computes the reference on the other core."""
    folder = os.path.join(work, name)
    shutil.rmtree(folder, ignore_errors=True)
    params_file, log_path = os.path.join(work, f"{name}.json"), os.path.join(work, f"{name}.log")
    with open(params_file, "w") as fh:
        json.dump(dict(params, output_folder_path=folder), fh)
    before = oom_kills()
    open(log_path, "w").close()  # a file, not a pipe: nothing blocks the attempt while `meanwhile` runs
    child = forker.start(params_file, log_path, work)
    try:
        if meanwhile is not None:
            meanwhile()
        code = child.wait()
    except BaseException:
        child.kill()
        child.wait()
        raise
    # an attempt killed by a signal (the memory limit) stops the step: the next remedy would be killed the same way
    stop_if_killed(code, f"onnx2tf attempt '{name}'", before)
    with open(log_path, errors="replace") as fh:
        log = ANSI.sub("", fh.read())
    with open(log_path, "w") as fh:
        fh.write(log)
    return folder, code, log


def save_model(proto, path, external):
    """Write an ONNX model; with `external`, its initializers into PATH.data beside it (the form of models past
    protobuf's 2 GB), which onnx writes from a copy: the proto given keeps its data."""
    import onnx

    if not external:
        onnx.save(proto, path)
        return
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    onnx.save(copy, path, save_as_external_data=True, all_tensors_to_one_file=True,
              location=os.path.basename(path) + ".data")


def copy_model(src, dst):
    """Copy an ONNX model with the external data files it names (read from its own folder); return whether it has
    external data. A model without any is copied byte for byte."""
    import onnx

    head = onnx.load(src, load_external_data=False)
    external = any(t.data_location == onnx.TensorProto.EXTERNAL for t in head.graph.initializer)
    if not external:
        shutil.copyfile(src, dst)
        return False
    try:
        save_model(onnx.load(src), dst, True)
    except Exception as exc:
        reject(f"{src}: its external data cannot be read ({first_line(exc)})")
    return True


def last_error(log):
    """An attempt's error: its last error or exception line, else its last line that is not a log line."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip() and not LOG_LINE.match(ln.strip())]
    errors = [ln for ln in lines if ln.startswith(("ERROR", "Error")) or "Error:" in ln or "error:" in ln]
    return (errors or lines or ["no output"])[-1][:300]


class Reference:
    """onnxruntime on the plan's inputs: outputs, logits, and the same with its graph optimizations off (the noise
    floor). Every attempt is judged against it with parity.judge, the criterion of the final verification."""

    def __init__(self, model, plan, allow_flex):
        self.allow_flex = allow_flex
        try:
            self.batches, self.groups = verify_io.make_batches(model.input_specs(), plan)
        except verify_io.InputError as exc:
            reject(str(exc))
        for group in self.groups:  # the float32 model is judged on every distribution, quantized or not
            group["judged"] = True
        self.outputs, self.logits, _ = run_batch(model, self.batches)
        twin, self.perturbation = model.perturbed()
        self.perturbed, self.perturbed_logits, _ = run_batch(twin, self.batches)
        self.tolerance = plan.get("tolerance")

    def judge(self, folder, stem, names):
        """(verdict of parity.judge or None, layout, note) for the float32 .tflite an attempt wrote (its signature
        given the user's names back first)."""
        path = os.path.join(folder, f"{stem}_float32.tflite")
        if not os.path.exists(path):
            return None, {}, "onnx2tf wrote no float32 .tflite"
        name_map.restore(path, names)
        flex = sorted(op_set(op_counts(path))["flex"])
        if flex and not self.allow_flex:
            raise FlexNeeded(flex)
        model = runtimes.ConvertedTFLite(path)
        batches, _ = model.adapt_inputs(self.batches)
        outputs, logits, _ = run_batch(model, batches)
        got, got_logits, layout = model.adapt_outputs(outputs, logits, self.outputs, self.logits)
        verdict = parity.judge(self.outputs, got, self.groups, "none", self.tolerance, perturbed=self.perturbed,
                               ref_logits=self.logits, got_logits=got_logits, perturbed_logits=self.perturbed_logits)
        return verdict, layout, ""


def summarize(verdict):
    """The worst output of a verdict, for the attempt's record."""
    outs = verdict.get("outputs") or []
    if not outs:
        return {"where": verdict.get("reason", "")}
    worst = max(outs, key=lambda o: (not o.get("passed"), o.get("max_rel_err", float("inf"))))
    record = {"max_rel_err": worst.get("max_rel_err", float("inf")), "where": f"output '{worst['name']}'",
              "tolerance": worst.get("tolerance"), "basis": verdict.get("basis")}
    if worst.get("worst_distribution"):
        record["distribution"] = worst["worst_distribution"]
    if not verdict.get("conclusive"):
        record["inconclusive"] = verdict.get("reason", "")
    return record


def first_bad_ops(log, limit=3):
    return [{"onnx_output": m.group(1), "max_abs_err": float(m.group(2))} for m in CHECK_LINE.finditer(log)][:limit]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--input", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--to", default="tflite", choices=("tflite", "tf_saved_model"))
    p.add_argument("--quantize", default="none", choices=sorted(VARIANT))
    p.add_argument("--calibration")
    p.add_argument("--mean")
    p.add_argument("--std")
    p.add_argument("--keep_nchw")
    p.add_argument("--param_replacement")
    p.add_argument("--remedies", default="auto", choices=("auto", "off"))
    p.add_argument("--allow_flex_ops", default="false")
    p.add_argument("--plan", help="the verification's input plan (JSON): attempts are judged on the same inputs")
    args = p.parse_args()
    # first of all, before onnxruntime runs here: the attempts are forked from a copy of the step as it is now
    forker = AttemptForker()
    try:
        convert_with(forker, args)
    finally:
        forker.close()


def convert_with(forker, args):
    work = os.path.join(tempfile.gettempdir(), "onnx2tf")  # the step's own scratch (in a warm worker, per step)
    os.makedirs(work, exist_ok=True)
    np.save(os.path.join(work, SAMPLE_NAME),
            np.random.default_rng(0).uniform(0.0, 1.0, (20, 128, 128, 3)).astype(np.float32))
    stem = "model"
    source = os.path.join(work, "source", f"{stem}.onnx")
    os.makedirs(os.path.dirname(source), exist_ok=True)
    external = copy_model(args.input, source)
    model = runtimes.OnnxModel(source)  # the reference: the user's graph, the user's names
    onnx_path = os.path.join(work, f"{stem}.onnx")  # what onnx2tf converts: the same graph with safe names
    safe_model, names = name_map.sanitize(model.proto)
    if names:
        save_model(safe_model, onnx_path, external)
    else:
        copy_model(source, onnx_path)
    safe = {original: s for s, original in names.items()}
    ranked = [s.name for s in model.inputs if len(s.shape) >= 3]
    if args.keep_nchw in (None, "false"):
        keep = []
    elif args.keep_nchw == "true":
        keep = ranked
    else:
        keep = csv(args.keep_nchw)
        unknown = [k for k in keep if k not in [s.name for s in model.inputs]]
        if unknown:
            reject(f"--keep_nchw names no input '{unknown[0]}'; inputs: {', '.join(s.name for s in model.inputs)}")
    reference = None  # computed while the first attempt converts (run_attempt's `meanwhile`)

    def make_reference():
        nonlocal reference
        reference = Reference(model, verify_io.read_plan(args.plan), boolean(args.allow_flex_ops))

    base = {"input_onnx_file_path": onnx_path, "output_signaturedefs": True,
            "copy_onnx_input_output_names_to_tflite": True, "non_verbose": False, "verbosity": "info"}
    if keep:
        base["keep_ncw_or_nchw_or_ncdhw_input_names"] = [safe.get(k, k) for k in keep]
    if args.param_replacement:
        base["param_replacement_file"] = name_map.replacement_file(args.param_replacement, names, work)
    if args.quantize == "dynamic":
        base["output_dynamic_range_quantized_tflite"] = True
    if args.quantize in ("int8", "int8-full"):
        if not args.calibration:
            reject(f"--quantize {args.quantize} needs --calibration")
        mean, std = parse_floats(args.mean, "mean"), parse_floats(args.std, "std")
        cind = []
        for i, (name, arr) in enumerate(calibration_arrays(args.calibration, model, keep, mean, std).items()):
            path = os.path.join(work, f"calibration_{i}.npy")
            np.save(path, arr)
            cind.append([safe.get(name, name), path, [0.0], [1.0]])
        base.update(output_integer_quantized_tflite=True, custom_input_op_name_np_data_path=cind,
                    input_quant_dtype="int8", output_quant_dtype="int8")

    os.makedirs(os.path.join(work, "simplified"), exist_ok=True)
    presimplified = os.path.join(work, "simplified", f"{stem}.onnx")  # same stem: same output file names
    remedies = [("default", {})]
    rewritten, rewrites = rewrite_graph(onnx_path, os.path.join(work, "rewritten", f"{stem}.onnx"))
    if args.remedies == "auto":
        if rewrites:  # patterns onnx2tf is known to get wrong, rewritten into ones it converts exactly
            remedies.append(("rewrite_graph", {"input_onnx_file_path": rewritten}))
        remedies += [
            ("accuracy_check_and_auto_param_replacement", {"check_onnx_tf_outputs_elementwise_close_full": True,
                                                           "auto_generate_json": True}),
            ("no_layout_optimizations", {"disable_suppression_flextranspose": True,
                                         "disable_suppression_flexstridedslice": True}),
        ]
        if not keep and ranked:
            remedies.append(("keep_inputs_nchw", {"keep_ncw_or_nchw_or_ncdhw_input_names": [safe.get(k, k)
                                                                                          for k in ranked]}))
        remedies += [("onnxsim_first", {"input_onnx_file_path": presimplified, "not_use_onnxsim": True}),
                     ("without_onnxsim", {"not_use_onnxsim": True})]

    tried, chosen = [], None
    for name, extra in remedies:
        params = dict(base, **extra)
        if name == "onnxsim_first":
            ok, note = simplify(onnx_path, presimplified)
            if not ok:
                tried.append({"remedy": name, "passed": False, "error": note})
                continue
        if name.startswith("accuracy_check") and args.param_replacement:
            continue  # the user's replacement JSON is in force; no automatic search over it
        print(f"onnx2tf: attempt '{name}'", file=sys.stderr, flush=True)
        folder, code, log = run_attempt(forker, name, params, work,
                                        meanwhile=make_reference if reference is None else None)
        record = {"remedy": name, "options": sorted(extra)}
        if name == "rewrite_graph":
            record["rewrites"] = [name_map.speak(r, names) for r in rewrites]
        if name.startswith("accuracy_check"):
            record["first_unmatched_ops"] = [dict(op, onnx_output=names.get(op["onnx_output"], op["onnx_output"]))
                                             for op in first_bad_ops(log)]
            found = glob.glob(os.path.join(folder, "*_auto.json")) + glob.glob(os.path.join(work, "*_auto.json"))
            if found:
                record["generated_json"] = os.path.basename(found[0])
                shutil.copyfile(found[0], os.path.join(work, "auto_param_replacement.json"))
                replacement = os.path.join(work, "auto_param_replacement.json")
                folder, code, log = run_attempt(forker, name + "_converted",
                                                dict(base, param_replacement_file=replacement), work)
            else:
                record["generated_json"] = None
        if code != 0:
            record.update(passed=False, error=name_map.speak(last_error(log), names))
            tried.append(record)
            continue
        try:
            verdict, layout, note = reference.judge(folder, stem, names)
        except FlexNeeded as exc:
            record.update(passed=False, error=str(exc), flex_ops=exc.ops)
            tried.append(record)
            continue
        except Exception as exc:  # the .tflite does not run at all
            record.update(passed=False, error=name_map.speak(unrunnable(exc), names))
            tried.append(record)
            continue
        record.update(summarize(verdict) if verdict else {"max_rel_err": None, "where": note}, output_layout=layout)
        record["passed"] = bool(verdict and verdict["passed"])
        tried.append(record)
        if record["passed"]:
            chosen = (name, folder)
            break
        if args.remedies == "off":
            break

    if chosen is None:
        summary = "; ".join(f"{t['remedy']}: {describe(t)}" for t in tried)
        print(json.dumps({"tried": tried}, indent=1, default=str), file=sys.stderr)
        hint = f"; {FLEX_HINT}" if any(t.get("flex_ops") for t in tried) else ""
        fail(f"onnx2tf did not convert {os.path.basename(args.input)} faithfully; tried {summary}{hint}")
    name, folder = chosen
    info = {"remedies": {"tried": tried, "used": name, "inputs": reference.groups,
                         "perturbation": reference.perturbation},
            "quantize": args.quantize, "keep_nchw": keep,
            "safe_names": {"renamed": len(names), "examples": dict(list(names.items())[:5])},
            "onnx_inputs": [s.to_json() for s in model.inputs]}
    if args.to == "tflite":
        variant = os.path.join(folder, f"{stem}_{VARIANT[args.quantize]}.tflite")
        if not os.path.exists(variant):
            fail(f"onnx2tf wrote no {os.path.basename(variant)} for --quantize {args.quantize}")
        shutil.copyfile(variant, os.path.join(args.out, "model.tflite"))
        name_map.restore(os.path.join(args.out, "model.tflite"), names)
        final = runtimes.TFLiteModel(os.path.join(args.out, "model.tflite"))
        counts = final.op_counts()
        info.update(transpose_ops=counts.get("TRANSPOSE", 0), ops=counts, op_set=op_set(counts),
                    onnx2tf_variant=os.path.basename(variant),
                    tflite_inputs=[s.to_json() for s in final.inputs],
                    io_types={"inputs": [np.dtype(d["dtype"]).name for d in final.in_details],
                              "outputs": [np.dtype(d["dtype"]).name for d in final.out_details]})
        artifacts = ["model.tflite"]
    else:
        target = os.path.join(args.out, "saved_model")
        shutil.copytree(folder, target, ignore=shutil.ignore_patterns("*.tflite", "*.json"))
        artifacts = ["saved_model"]
    step_done(args.out, artifacts, **info)


def describe(attempt):
    if attempt.get("error"):
        return attempt["error"]
    if attempt.get("inconclusive"):
        return attempt["inconclusive"]
    if attempt.get("max_rel_err") is None:
        return attempt.get("where") or "no result"
    where = attempt.get("where", "")
    if attempt.get("distribution"):
        where += f" on {attempt['distribution']} inputs"
    basis = " (logits)" if attempt.get("basis") == "logits" else ""
    return (f"max error {attempt['max_rel_err']:.3g} of the output scale{basis} at {where} "
            f"(tolerance {attempt.get('tolerance', 0):.2g})")


class FlexNeeded(Exception):
    """An attempt's .tflite holds Flex (TF Select) ops and --allow_flex_ops was not given."""

    def __init__(self, ops):
        self.ops = ops
        super().__init__(f"the .tflite needs Flex (TF Select) ops ({', '.join(ops)}), which a plain TFLite/LiteRT "
                         "interpreter cannot run")


def unrunnable(exc):
    """Why an attempt's .tflite does not run in the TFLite interpreter."""
    return f"the .tflite does not run in the TFLite interpreter ({first_line(exc)})"


def rewrite_graph(src, dst):
    """The model with onnx_rewrites applied, saved at dst: (dst, [changes]); ([] when nothing matched)."""
    import onnx

    import onnx_rewrites

    try:
        model, changes = onnx_rewrites.apply_all(onnx.load(src))
    except Exception as exc:  # a rewrite that trips over an unusual graph is just not offered
        print(f"onnx2tf: graph rewrites skipped ({first_line(exc)})", file=sys.stderr, flush=True)
        return None, []
    if changes:
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        onnx.save(model, dst)
    return dst, changes


def simplify(src, dst):
    import onnx
    import onnxsim

    try:
        simplified, ok = onnxsim.simplify(onnx.load(src))
    except Exception as exc:
        return False, f"onnxsim failed: {first_line(exc)}"
    if not ok:
        return False, "onnxsim could not validate its simplification"
    onnx.save(simplified, dst)
    return True, ""


if __name__ == "__main__":
    main()
