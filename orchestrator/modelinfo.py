"""`orchestrator inspect`: what a model is (inputs, outputs, op histogram, parameters, size, producer), read in the
stack that reads its format (images/*/steps/inspect_model.py over images/shared/model_info.py); nothing of an ML
framework is imported on the host."""

import json
import tempfile
from pathlib import Path

from orchestrator import formats, images, pipeline, protocol, verify
from orchestrator.errors import StepFailed, UsageError
from orchestrator.runner import StepRun, execute

SCRIPT = "inspect_model.py"
SCRIPT_OPTIONS = ("signature_name", "saved_model_tags")  # what inspect_model.py takes besides the input's own


def stack_for(fmt, producer=None):
    """The stack whose inspect_model.py reads a model of `fmt` written by `producer`: the format's own choice, else
    the stack its verification runner would run it in."""
    record = formats.get(fmt)
    if record.inspected_in:
        return record.inspected_in
    runner = verify.runner_for(fmt, producer)
    if runner is None:
        raise UsageError(f"no stack of this build reads {fmt} models written by {producer.describe()}")
    return runner.stack


def inspect(engine, path, fmt=None, build_missing=True, log=None, values=None):
    """The model's facts as a dict (model_info's, plus where they were read)."""
    values = {k: v for k, v in (values or {}).items() if v is not None}
    fmt, seen = pipeline.resolve_source(fmt, path, None)
    record = formats.public(fmt)
    if not record.inspectable:
        raise UsageError(f"inspect does not read {fmt} models; formats it reads: "
                         + ", ".join(n for n, f in formats.FORMATS.items() if f.inspectable and not f.internal))
    takes = record.adapter.options + SCRIPT_OPTIONS
    for name in values:
        if name not in takes:
            raise UsageError(f"inspect {fmt}: no option --{name} (options: {', '.join('--' + t for t in takes)})")
    source = formats.check(fmt, path, values)
    producer = pipeline.producer_of(fmt, path)
    stack = stack_for(fmt, producer)
    ready = images.ready(engine, [stack], build_missing, log=log)
    with tempfile.TemporaryDirectory(prefix="orchestrator-inspect-") as tmp:
        mounted = record.adapter.prepare(source, values, Path(tmp) / "input")
        args = ["--format", fmt, "--input", mounted.model] + mounted.args
        args += [part for name in SCRIPT_OPTIONS if name in values for part in (f"--{name}", str(values[name]))]
        run = StepRun("inspect", ready[stack], SCRIPT, args, mounted.mounts, Path(tmp) / "out")
        meta, _ = execute(engine, run, log=log)
    found = dict(meta.get("info") or {})
    why = protocol.problem("model_info", found)
    if why:  # a bug of the stack's script, not of the user's model
        raise StepFailed("inspect", ready[stack].tag, 0, "", run.command(),
                         reason=f"its facts break model_info.schema.json: {why}")
    found.update(path=str(path), read_in=ready[stack].tag)
    if seen:
        found["detected"] = seen
    return found


def _shape(shape):
    return "?" if shape is None else "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _size(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def tensor_line(t):
    line = f"  {t['name']}  {t.get('dtype') or '?'} {_shape(t.get('shape'))}"
    if t.get("scale") is not None:
        line += f"  (scale {t['scale']}, zero point {t['zero_point']})"
    return line


def describe(found):
    """Lines for a terminal."""
    params = found.get("parameters")
    lines = [f"{found['path']}: {found['format']}, {_size(found['size_bytes'])}"
             + (f", {params:,} parameters" if params is not None else "") + f" (read in {found['read_in']})"]
    if found.get("detected"):
        lines.append(f"detected: {found['detected']}")
    if found.get("producer"):
        lines.append("producer: " + ", ".join(f"{k} {v}" for k, v in found["producer"].items() if v not in ("", None)))
    for kind in ("inputs", "outputs"):
        lines.append(f"{kind}:")
        lines += [tensor_line(t) for t in found.get(kind) or []] or ["  (none recorded)"]
    kinds = found.get("op_kinds") or {}
    for kind, ops in kinds.items():
        total = sum(ops.values())
        lines.append(f"{kind} ops ({total} in {len(ops)} kinds): "
                     + (", ".join(f"{name} {n}" for name, n in ops.items()) or "none"))
    lines += [f"note: {note}" for note in found.get("notes") or []]
    return lines


def as_json(found):
    return json.dumps(found, sort_keys=True)
