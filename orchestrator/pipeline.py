"""`convert`: plan the route, run each step in its stack, verify, and write OUTPUT_DIR atomically."""

import datetime
import hashlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path

from orchestrator import __version__, formats, images, planner
from orchestrator import verify as verification_mod
from orchestrator import options as opts_mod
from orchestrator.errors import UsageError
from orchestrator.runner import StepRun, execute


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_hashes(path):
    """{relative path: sha256} for a file or every file under a folder."""
    path = Path(path)
    if path.is_file():
        return {path.name: sha256_file(path)}
    return {f.relative_to(path).as_posix(): sha256_file(f) for f in sorted(path.rglob("*")) if f.is_file()}


def _prepare_output(output_dir, force):
    out = Path(output_dir).absolute()
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise UsageError(f"{out}: exists and is not empty; pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    return out, staging


def _commit(staging, out):
    """Move the finished staging folder into place; replace an old OUTPUT_DIR only at the very end."""
    trash = None
    if out.exists():
        trash = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        out.rename(trash)
    staging.rename(out)
    if trash is not None:
        shutil.rmtree(trash, ignore_errors=True)


def _place(src, dst):
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(src), str(dst))


def convert(engine, source, input_path, output_dir, to="tflite", options=None, verify=True, force=False,
            build_missing=True, memory="8g", timeout=3600.0, log=None, build_options=None):
    """Convert and return the manifest (a dict). Raises OrchestratorError subclasses."""
    started = time.monotonic()
    chain = planner.plan(source, to)
    values = opts_mod.validate(chain, options or {})
    src = formats.check_input(source, input_path)
    do_verify = verify and verify_available(source, to)

    stacks = {name: images.get_stack(name) for name in planner.stacks_of(chain)}
    if do_verify:
        stacks.update({n: images.get_stack(n) for n in verification_mod.stacks_needed(source, to)})
    out, staging = _prepare_output(output_dir, force)
    try:
        tagged = {n: images.ensure_image(engine, s, build_if_missing=build_missing, opts=build_options,
                                         log=log or (lambda _line: None)) for n, s in stacks.items()}
        work = staging / ".work"
        manifest_steps = []
        current, current_fmt = src, source
        artifacts = []
        for i, step in enumerate(chain, 1):
            mounted = {}
            inputs = {str(current): f"/in/model/{current.name}"}
            for name in step.options:
                if isinstance(values.get(name), Path):
                    mounted[name] = f"/in/opt/{name}/{values[name].name}"
                    inputs[str(values[name])] = mounted[name]
            args = list(step.args) + ["--input", f"/in/model/{current.name}"]
            args += opts_mod.as_args(step.options, values, mounted)
            run = StepRun(step.name, step.stack, *tagged[step.stack], step.script, args, inputs,
                          work / f"{i}-{step.name}")
            if log:
                log(f"step {i}/{len(chain)}: {step.name} ({step.source} -> {step.target}) in {run.image}")
            meta, result = execute(engine, run, memory=memory, timeout=timeout, log=log)
            manifest_steps.append({
                "name": step.name, "from": step.source, "to": step.target, "stack": step.stack,
                "image": run.image, "image_id": run.image_id, "command": ["python", f"/opt/steps/{step.script}", *args],
                "seconds": round(result.seconds, 2), "versions": meta.get("versions", {}), "info": meta.get("info", {}),
            })
            produced = run.out_dir / formats.get(step.target).artifact
            if not produced.exists():
                raise UsageError(f"step {step.name} did not produce {produced.name}")  # a bug in the step table
            current, current_fmt = produced, step.target
        converted_at = time.monotonic()

        verification = {"skipped": True, "reason": "--no-verify"} if not verify else \
            {"skipped": True, "reason": f"no runner for {source} or {to} yet"}
        if do_verify:
            runs = verification_mod.plan_runs(source, src, to, current, values, tagged, work)
            verify_steps = []
            for run in runs:
                if log:
                    log(f"verify: {run.name} in {run.image}")
                meta, result = execute(engine, run, memory=memory, timeout=timeout, log=log)
                verify_steps.append({"name": run.name, "stack": run.stack, "image": run.image,
                                     "image_id": run.image_id, "seconds": round(result.seconds, 2),
                                     "versions": meta.get("versions", {})})
            verification = verification_mod.collect(runs, staging / "verification")
            verification["steps"] = verify_steps
            verification["seconds"] = round(time.monotonic() - converted_at, 2)
            verification_mod.check(verification)

        # final artifact at the top; intermediate artifacts under intermediate/
        final = staging / current.name
        _place(current, final)
        artifacts.append(final)
        for i, step in enumerate(chain[:-1], 1):
            inter = work / f"{i}-{step.name}" / formats.get(step.target).artifact
            if inter.exists():
                dest = staging / "intermediate" / inter.name
                _place(inter, dest)
                artifacts.append(dest)
        shutil.rmtree(work, ignore_errors=True)

        manifest = {
            "orchestrator": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "route": {"from": source, "to": to, "steps": [s.name for s in chain]},
            "input": {"path": str(src), "sha256": file_hashes(src)},
            "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in values.items()},
            "steps": manifest_steps,
            "artifacts": {p.relative_to(staging).as_posix() if p.is_file() else p.relative_to(staging).as_posix() + "/":
                          file_hashes(p) if p.is_dir() else sha256_file(p) for p in artifacts},
            "verification": verification,
            "timings": {"convert_seconds": round(converted_at - started, 2),
                        "total_seconds": round(time.monotonic() - started, 2)},
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
        _commit(staging, out)
        manifest["output_dir"] = str(out)
        return manifest
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def verify_available(source, to):
    return verification_mod.available(source, to)


def summary(manifest):
    v = manifest["verification"]
    if v.get("skipped"):
        check = f"verification skipped ({v['reason']})"
    else:
        worst = max((o.get("max_rel_err", 0.0) for o in v["outputs"]), default=0.0)
        check = f"verified: max error {worst:.2g} of output scale (tolerance {v['tolerance']:g}, mode {v['mode']})"
    arts = ", ".join(a for a in manifest["artifacts"] if not a.startswith("intermediate/"))
    return f"{manifest['route']['from']} -> {manifest['route']['to']}: {manifest['output_dir']}/{{{arts}, manifest.json}}; {check}"
