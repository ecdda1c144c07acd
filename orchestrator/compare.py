"""`orchestrator compare A B`: two models (two conversions, or a source and a conversion) run on the same seeded or
given inputs by verification's own machinery (A is the reference: it makes the inputs, B runs them, compare.py
judges), with what moved besides the outputs: size, parameters, ops and, for .tflite models, latency."""

import tempfile
from pathlib import Path

from orchestrator import formats, images, modelinfo, pipeline, report, routes, verify
from orchestrator import options as opts_mod
from orchestrator.errors import StepFailed, StepRejectedInput, UsageError
from orchestrator.runner import StepRun, execute

OPTIONS = routes.VERIFY_OPTIONS + ("quantize",)  # the inputs and the tolerance (--quantize picks its mode)


def _values(given, runners):
    allowed = OPTIONS + tuple(o for r in runners for o in r.options)
    values = {}
    for raw, value in (given or {}).items():
        name = raw.replace("-", "_")
        if name not in allowed:
            raise UsageError(f"compare: no option --{raw}; options: " + " ".join(f"--{o}" for o in allowed))
        values[name] = opts_mod.coerce(routes.OPTIONS[name], value)
    return values


def _side(path, fmt):
    fmt, seen = pipeline.resolve_source(fmt, path)
    formats.public(fmt)
    producer = pipeline.producer_of(fmt, path)
    runner = verify.runner_for(fmt, producer)
    if runner is None:
        raise UsageError(f"{path}: {fmt} models do not run in any stack of this build; compare runs both models")
    return {"path": str(path), "format": fmt, "detected": seen, "runner": runner, "producer": producer}


def _facts(engine, side, ready, work, memory, timeout, log):
    """The model's facts: report_model.py's for a .tflite (with latency), else inspect's; an error is said."""
    record = formats.get(side["format"])
    if not record.inspectable:
        return {"note": f"{side['format']} models are not inspected"}
    source = formats.check(side["format"], side["path"])
    mounted = record.adapter.prepare(source, {}, work / "input")
    stack = side["runner"].stack if side["format"] == "tflite" else modelinfo.stack_for(side["format"],
                                                                                          side["producer"])
    script = report.REPORT_SCRIPT if side["format"] == "tflite" else modelinfo.SCRIPT
    args = ["--input", mounted.model] + ([] if side["format"] == "tflite" else ["--format", side["format"]])
    if stack not in ready:
        ready.update(images.ready(engine, [stack], build_missing=False))
    run = StepRun(f"facts_{work.name}", ready[stack], script, args + mounted.args, mounted.mounts, work / "out")
    try:
        meta, _ = execute(engine, run, memory=memory, timeout=timeout, log=log)
    except (StepFailed, StepRejectedInput) as exc:
        return {"error": str(exc)}
    facts = dict(meta.get("info") or {})
    facts.pop("graph_pages", None)
    return facts


def compare(engine, a, b, format_a=None, format_b=None, options=None, build_missing=True, memory="8g",
            timeout=3600.0, log=None):
    """{"a", "b": each side's facts, "verification": the record, "passed"}; B is judged against A."""
    sides = [_side(a, format_a), _side(b, format_b)]
    values = _values(options, [s["runner"] for s in sides])
    check = verify.Check(sides[0]["runner"], sides[0]["format"], sides[1]["runner"])
    verification = verify.Verification(check, values)
    ready = images.ready(engine, verification.stacks(), build_missing, log=log)
    source_a = formats.check(sides[0]["format"], a, values)
    result = formats.check(sides[1]["format"], b).path
    with tempfile.TemporaryDirectory(prefix="orchestrator-compare-") as tmp:
        work = Path(tmp)
        first = formats.get(sides[0]["format"]).adapter.prepare(source_a, values, work / "input")
        ro = pipeline.read_only_roots(first, values) + [str(result.parent)]
        with engine.session(rw=[work], ro=ro) as session:
            record = verification.run(session, first, result, ready, work / "runs", work / "kept", memory=memory,
                                      timeout=timeout, log=log)
            facts = [_facts(session, side, ready, work / f"facts-{name}", memory, timeout, log)
                     for name, side in zip("ab", sides)]
    for side, found in zip(sides, facts):
        side.update(facts=found)
        del side["runner"], side["producer"]
    return {"a": sides[0], "b": sides[1], "verification": record, "passed": bool(record.get("passed"))}


def _num(v):
    return "-" if v is None else (f"{v:.3g}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v))


def describe(found):
    """Lines for a terminal: each output's errors, then what else moved from A to B."""
    a, b, v = found["a"], found["b"], found["verification"]
    lines = [f"A {a['path']} ({a['format']})", f"B {b['path']} ({b['format']}), judged against A"]
    for o in v.get("outputs") or []:
        verdict = "same within tolerance" if o.get("passed") else "DIFFERS"
        lines.append(f"  output {o['name']}: max abs {_num(o.get('max_abs_err'))}, max rel {_num(o.get('max_rel_err'))}"
                     f", tolerance {_num(o.get('tolerance'))}: {verdict}")
    if not v.get("outputs"):
        lines.append(f"  outputs: {v.get('reason', 'nothing compared')}")
    fa, fb = a["facts"], b["facts"]
    for kind in ("inputs", "outputs"):
        ta = {t["name"]: t for t in fa.get(kind) or []}
        tb = {t["name"]: t for t in fb.get(kind) or []}
        moved = [f"{name} {ta[name]['dtype']} -> {tb[name]['dtype']}" for name in ta
                 if name in tb and ta[name]["dtype"] != tb[name]["dtype"]]
        if moved:
            lines.append(f"  {kind}: " + ", ".join(moved))
    for key, label in (("size_bytes", "size (bytes)"), ("parameters", "parameters")):
        if key in fa and key in fb:
            moved = "" if fa[key] == fb[key] else "  (moved)"
            lines.append(f"  {label}: {_num(fa[key])} -> {_num(fb[key])}{moved}")
    if "ops" in fa and "ops" in fb:
        changed = sorted(set(fa["ops"]) | set(fb["ops"]))
        diffs = [f"{op} {fa['ops'].get(op, 0)} -> {fb['ops'].get(op, 0)}" for op in changed
                 if fa["ops"].get(op, 0) != fb["ops"].get(op, 0)]
        lines.append("  ops: " + (", ".join(diffs) if diffs else "the same"))
    for key in ("threads_1", "threads_all"):
        la, lb = (fa.get("latency") or {}).get(key), (fb.get("latency") or {}).get(key)
        if la and lb:
            lines.append(f"  latency ({la['threads']} thread{'s' if la['threads'] > 1 else ''}): median "
                         f"{la['median_ms']} -> {lb['median_ms']} ms, p90 {la['p90_ms']} -> {lb['p90_ms']} ms")
    for side, name in ((fa, "A"), (fb, "B")):
        if side.get("error"):
            lines.append(f"  {name}: its facts could not be read: {side['error']}")
    lines.append("the same within tolerance" if found["passed"] else "they differ")
    return lines
