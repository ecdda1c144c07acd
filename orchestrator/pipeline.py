"""`convert`: plan the route, run each step in its stack, verify, and write OUTPUT_DIR atomically."""

import datetime
import hashlib
import json
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from orchestrator import __version__, formats, images, planner, ssd
from orchestrator import verify as verification_mod
from orchestrator import options as opts_mod
from orchestrator.errors import UsageError
from orchestrator.runner import StepRun, execute, interpreter


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


def _gather_tfjs(src, weights_dir, scratch):
    """model.json and its shards from --weights_path_prefix, gathered into one folder (the TF.js tools want the
    shards beside model.json). Returns the gathered model.json."""
    doc = json.loads(Path(src).read_text())
    shards = formats.check_weights_manifest(Path(src), doc, weights_dir)
    folder = Path(scratch) / "tfjs"
    folder.mkdir(parents=True)
    shutil.copyfile(src, folder / "model.json")
    for group in doc.get("weightsManifest", []):
        for p in group["paths"]:
            target = folder / p
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(weights_dir) / p, target)
    return folder / "model.json", shards


def _first_step_inputs(source, src, values, scratch):
    """(mounts, container path of the input, extra args, facts, consumed options) for the first step."""
    if source == "ssd":
        return ssd.prepare(src, values, scratch)
    container = f"/in/model/{src.name}"
    if formats.get(source).with_folder:
        return {str(src.parent): "/in/model"}, container, [], {}, ("weights_path_prefix",)
    return {str(src): container}, container, [], {}, ()


def _step_run(i, step, current, values, tagged, work, first):
    """The StepRun of step i. `current` is the previous step's (out folder, artifact) or `first`."""
    if current is None:
        inputs, model_in, extra, _facts, consumed = first
        inputs = dict(inputs)
    else:
        prev_dir, artifact = current
        inputs, model_in, extra, consumed = {str(prev_dir): "/in/model"}, f"/in/model/{artifact}", [], ()
    names = [o for o in step.options if o not in consumed]  # consumed: handled by the input's preparation
    option_inputs, mounted = opts_mod.mounts(names, values)
    inputs.update(option_inputs)
    args = list(step.args) + ["--input", model_in] + extra
    args += opts_mod.as_args(names, values, mounted)
    if step.checks_itself:  # judged on the verification's inputs, by the verification's criterion
        given_inputs, given = verification_mod.plan_mounts(values)
        inputs.update(given_inputs)
        args += ["--plan", json.dumps(verification_mod.input_plan(values, given, mode="none"))]
    return StepRun(step.name, step.stack, *tagged[step.stack], step.script, args, inputs, work / f"{i}-{step.name}")


def convert(engine, source, input_path, output_dir, to="tflite", options=None, verify=True, force=False,
            build_missing=True, memory="8g", timeout=3600.0, log=None, build_options=None):
    """Convert and return the manifest (a dict). Raises OrchestratorError subclasses."""
    started = time.monotonic()
    if formats.get(source).internal or formats.get(to).internal:
        raise UsageError(f"'{source if formats.get(source).internal else to}' is an intermediate format of a route")
    chain = planner.plan(source, to, given=options)
    values = opts_mod.validate(chain, options or {})
    src = user_src = formats.check_input(source, input_path, weights_dir=values.get("weights_path_prefix"))
    if "base_model" in values and to != "tflite":
        raise UsageError("--base_model puts a TF.js head under a base network for --to tflite only")
    if "base_model" in values:
        formats.check_input("keras", values["base_model"])
    check = verification_mod.check_for(source, to, values) if verify else None

    stacks = {name: images.get_stack(name) for name in planner.stacks_of(chain)}
    if check:
        stacks.update({n: images.get_stack(n) for n in verification_mod.stacks_needed(check)})
    out, staging = _prepare_output(output_dir, force)
    try:
        work = staging / ".work"
        if formats.get(source).kind == "code":  # FILE.py:NAME: the file's hash
            input_hashes = file_hashes(formats.code_file(src))
        elif formats.get(source).with_folder:  # model.json and its shards, not the whole folder
            shards = formats.check_weights_manifest(src, json.loads(src.read_text()), values.get("weights_path_prefix"))
            input_hashes = {src.name: sha256_file(src), **{f.name: sha256_file(f) for f in shards}}
        else:
            input_hashes = file_hashes(src)
        if "weights_path_prefix" in values:
            src, _ = _gather_tfjs(src, values["weights_path_prefix"], work / "input")
        first = _first_step_inputs(source, src, values, work / "input")
        tagged = {n: images.ensure_image(engine, s, build_if_missing=build_missing, opts=build_options,
                                         log=log or (lambda _line: None)) for n, s in stacks.items()}
        manifest_steps, produced = [], {}
        current = None
        for i, step in enumerate(chain, 1):
            run = _step_run(i, step, current, values, tagged, work, first)
            if log:
                log(f"step {i}/{len(chain)}: {step.name} ({step.source} -> {step.target}) in {run.image}")
            meta, result = execute(engine, run, memory=memory, timeout=timeout, log=log)
            manifest_steps.append({
                "name": step.name, "from": step.source, "to": step.target, "stack": step.stack,
                "image": run.image, "image_id": run.image_id, "command": [interpreter(step.script),
                                                                          f"/opt/steps/{step.script}", *run.args],
                "seconds": round(result.seconds, 2), "versions": meta.get("versions", {}), "info": meta.get("info", {}),
            })
            artifact = formats.get(step.target).artifact
            if not (run.out_dir / artifact).exists():
                raise UsageError(f"step {step.name} did not produce {artifact}")  # a bug in the step table
            produced[step.target] = (run.out_dir, artifact, meta.get("artifacts") or [artifact])
            current = (run.out_dir, artifact)
        converted_at = time.monotonic()

        if check:
            ref_dir, ref_artifact, _ = produced.get(check.reference_format, (None, None, None))
            ref_model = (ref_dir / ref_artifact) if ref_dir else src
            verification = verification_mod.run(engine, check, ref_model, ref_dir is not None,
                                                 current[0] / current[1], values, tagged, work,
                                                 staging / "verification", memory=memory, timeout=timeout, log=log)
            verification_mod.check(verification)
        elif not verify:
            verification = {"skipped": True, "reason": "--no-verify"}
        else:
            verification = {"skipped": True, "reason": f"no verification for {source} -> {to} yet"}

        if values.get("model_tflite") and to == "tflite":  # the gesture-classifier converter's --model_tflite
            folder, _, names = produced["tflite"]
            (folder / "model.tflite").rename(folder / values["model_tflite"])
            produced["tflite"] = (folder, values["model_tflite"], [values["model_tflite"]] + names[1:])
        # every step's artifacts land at the top of OUTPUT_DIR (the final one listed first)
        artifacts = []
        for fmt in [step.target for step in reversed(chain)]:
            folder, _, names = produced[fmt]
            for name in names:
                dest = staging / name
                if dest.exists() or not (folder / name).exists():
                    continue
                _place(folder / name, dest)
                artifacts.append(dest)
        shutil.rmtree(work, ignore_errors=True)

        manifest = {
            "orchestrator": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "route": {"from": source, "to": to, "steps": [s.name for s in chain]},
            "input": {"path": str(user_src), "sha256": input_hashes},
            "options": {k: (str(v) if isinstance(v, (Path, opts_mod.CodeRef)) else
                            ",".join(f"{a}:{b}" for a, b in v) if isinstance(v, tuple) else v)
                        for k, v in values.items()},
            "steps": manifest_steps,
            "artifacts": {p.relative_to(staging).as_posix() + ("/" if p.is_dir() else ""):
                          file_hashes(p) if p.is_dir() else sha256_file(p) for p in artifacts},
            "verification": verification,
            "timings": {"convert_seconds": round(converted_at - started, 2),
                        "total_seconds": round(time.monotonic() - started, 2)},
        }
        if source == "ssd":
            manifest["input"]["model"] = dict(first[3])
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
        _commit(staging, out)
        manifest["output_dir"] = str(out)
        return manifest
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def verify_files(engine, source, input_path, result_path, to="tflite", options=None, build_missing=True,
                 memory="8g", timeout=3600.0, log=None, keep=None):
    """Verify an existing conversion: the source model against RESULT_PATH (a model of format `to`), exactly as
    `convert` verifies its own result. Returns the verification record; raises VerificationFailed (exit 4)."""
    if formats.get(source).internal or formats.get(to).internal:
        raise UsageError(f"'{source if formats.get(source).internal else to}' is an intermediate format of a route")
    chain = planner.plan(source, to, given=options)
    values = opts_mod.validate(chain, options or {})
    src = formats.check_input(source, input_path, weights_dir=values.get("weights_path_prefix"))
    result = formats.check_input(to, result_path)
    check = verification_mod.check_for(source, to, values)
    if check is None:
        raise UsageError(f"no verification for {source} -> {to} yet")
    if check.reference_format != source:
        if formats.get(check.reference_format).internal:
            raise UsageError(f"{source} -> {to} is verified against an intermediate artifact of the route "
                             f"({check.reference_format}); `orchestrator convert` verifies it")
        raise UsageError(f"{source} -> {to} is verified against the route's {check.reference_format} artifact; "
                         f"give that: orchestrator verify {check.reference_format} ...")
    stacks = {n: images.get_stack(n) for n in verification_mod.stacks_needed(check)}
    tagged = {n: images.ensure_image(engine, s, build_if_missing=build_missing, log=log or (lambda _line: None))
              for n, s in stacks.items()}
    work = Path(tempfile.mkdtemp(prefix="orchestrator-verify-"))
    try:
        keep_dir = Path(keep).absolute() if keep else work / "verification"
        if keep and keep_dir.exists() and any(keep_dir.iterdir()):
            raise UsageError(f"{keep_dir}: exists and is not empty")
        record = verification_mod.run(engine, check, src, False, result, values, tagged, work / "runs", keep_dir,
                                      memory=memory, timeout=timeout, log=log)
        verification_mod.check(record)
        return record
    finally:
        shutil.rmtree(work, ignore_errors=True)


def summary(manifest):
    arts = ", ".join(manifest["artifacts"])
    return (f"{manifest['route']['from']} -> {manifest['route']['to']}: {manifest['output_dir']}/{{{arts}, "
            f"manifest.json}}; {verification_mod.describe(manifest['verification'])}")
