"""`orchestrator check [FROM] INPUT [--to TO] [flags]`: a pre-flight, not a conversion. It plans the route (the
steps and stacks the conversion would take, with the choices the route has), then, where a stack can tell, lists
the source's ops that the target lacks: no TFLite builtin (they need Flex, or a custom op), no TF.js kernel, no
onnx2tf converter. It names the flags that would help and fails (exit 7) when the conversion as asked cannot work.

The op pre-flight runs in the stack that reads the input (its steps/check_model.py); a stack without one has none,
and the check says so."""

import tempfile
from pathlib import Path

from orchestrator import formats, images, pipeline, planner, verify
from orchestrator.errors import CheckFailed, StepRejectedInput, UsageError
from orchestrator.runner import StepRun, execute

SCRIPT = "check_model.py"
SCRIPT_OPTIONS = ("signature_name", "saved_model_tags", "input_arrays", "output_arrays", "input_shapes")
CUSTOM_OPS = ("TFLite_Detection_PostProcess",)  # custom ops apps register: --allow_custom_ops keeps them


def _stack(fmt, producer):
    runner = verify.runner_for(fmt, producer)
    if runner is not None and images.get_stack(runner.stack).has_script(SCRIPT):
        return runner.stack
    return None


def check(engine, source, path, to="tflite", options=None, build_missing=True, log=None):
    """{"from", "to", "route", "stacks", "alternatives", "ops", "problems": [...], "advice": [...], "passed"}."""
    options = dict(options or {})
    source, seen = pipeline.resolve_source(source, path)
    producer = pipeline.producer_of(source, path)
    why = planner.unreadable(source, producer)
    if why:
        raise CheckFailed(f"{path}: {why}")
    try:
        chain, values = pipeline.plan(source, to, options, complete=True, producer=producer)
    except UsageError as exc:  # no route, an option the route lacks, a missing required option
        raise CheckFailed(f"{path}: {exc}") from None
    found = {"from": source, "to": to, "detected": seen, "route": [s.name for s in chain],
             "stacks": planner.stacks_of(chain), "alternatives": [], "ops": {}, "problems": [], "advice": []}
    found["alternatives"] = [f"--{choice} ({' -> '.join(s.name for s in alt)} [{', '.join(planner.stacks_of(alt))}])"
                             for choice, alt in planner.alternatives(chain)]
    stack = _stack(source, producer)
    if stack is None:
        found["advice"].append(f"no op pre-flight for {source} models: the conversion's own checks apply")
    else:
        facts = _run(engine, stack, source, path, to, values, build_missing, log)
        found["ops"] = facts.get("ops", {})
        judge(found, facts, values, chain)
    found["advice"] += [f"another converter: {alt}" for alt in found["alternatives"]]
    found["passed"] = not found["problems"]
    return found


def _run(engine, stack, source, path, to, values, build_missing, log):
    ready = images.ready(engine, [stack], build_missing, log=log)
    record = formats.get(source)
    checked = formats.check(source, path, values)
    with tempfile.TemporaryDirectory(prefix="orchestrator-check-") as tmp:
        mounted = record.adapter.prepare(checked, values, Path(tmp) / "input")
        args = ["--format", source, "--input", mounted.model, "--to", to] + mounted.args
        args += [part for name in SCRIPT_OPTIONS if name in values for part in (f"--{name}", str(values[name]))]
        run = StepRun("check", ready[stack], SCRIPT, args, mounted.mounts, Path(tmp) / "out")
        try:
            meta, _ = execute(engine, run, log=log)
        except StepRejectedInput as exc:
            raise CheckFailed(str(exc)) from None
    return meta.get("info") or {}


def judge(found, facts, values, chain):
    """Problems (the conversion as asked would fail) and advice (flags that help) from the stack's findings."""
    problems, advice = found["problems"], found["advice"]
    flex = facts.get("flex") or []
    custom = facts.get("custom") or []
    if flex:
        line = f"no TFLite builtin for {', '.join(flex)}: they need Flex (TF Select) ops"
        if values.get("allow_flex_ops"):
            advice.append(line + "; --allow_flex_ops keeps them (the app links the Flex delegate)")
        else:
            problems.append(line + "; convert with --allow_flex_ops (the app then links tensorflow-lite-select-tf-ops)")
    if custom:
        known = [op for op in custom if op in CUSTOM_OPS]
        line = f"no TFLite builtin and no Flex kernel for {', '.join(custom)}"
        if known and values.get("allow_custom_ops"):
            advice.append(line + "; --allow_custom_ops keeps them as custom ops the app registers")
        elif known:
            problems.append(line + "; convert with --allow_custom_ops (the app registers the op)")
        else:
            problems.append(line + ": no flag makes them run; replace them in the model")
    if facts.get("converter_error"):
        problems.append(f"the TFLite converter fails: {facts['converter_error']}")
    if facts.get("no_tfjs_kernel"):
        problems.append(f"no TF.js kernel for {', '.join(facts['no_tfjs_kernel'])}: TF.js cannot run the graph model")
    if facts.get("no_converter"):
        problems.append(f"onnx2tf converts no {', '.join(facts['no_converter'])}")
    if facts.get("nchw_inputs") and "keep_nchw" not in values and any("keep_nchw" in s.options for s in chain):
        advice.append(f"inputs {', '.join(facts['nchw_inputs'])} are NCHW: the .tflite takes them NHWC unless "
                      "--keep_nchw all")


def describe(found):
    lines = [f"route: {found['from']} -> {found['to']}: {' -> '.join(found['route'])} "
             f"[{', '.join(found['stacks'])}]"]
    if found.get("detected"):
        lines.insert(0, f"detected {found['from']}: {found['detected']}")
    if found["ops"]:
        lines.append(f"source ops ({sum(found['ops'].values())} in {len(found['ops'])} kinds): "
                     + ", ".join(f"{op} {n}" for op, n in list(found["ops"].items())[:20])
                     + (" ..." if len(found["ops"]) > 20 else ""))
    lines += [f"problem: {p}" for p in found["problems"]]
    lines += [f"advice: {a}" for a in found["advice"]]
    lines.append("check passed: the conversion as asked can proceed" if found["passed"] else
                 f"check failed: {len(found['problems'])} problem(s)")
    return lines
