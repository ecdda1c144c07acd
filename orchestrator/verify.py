"""Shared verification: the source model and the converted model run on the same inputs, each in its own
stack, and a compare step measures the difference against a tolerance chosen by quantization mode."""

import json
import shutil
from pathlib import Path

from orchestrator import options as opts_mod
from orchestrator import formats, routes
from orchestrator.errors import VerificationFailed
from orchestrator.runner import StepRun


def check_for(source, target, values=None):
    """The Check for a route: declared in routes.CHECKS, else the source's and target's runners; or None."""
    if values and "base_model" in values and target != "keras":
        # a head merged under a base network: the merged Keras model (step 1) is the reference
        return routes.Check(routes.RUNNERS["keras"], "keras", routes.RUNNERS[target])
    if (source, target) in routes.CHECKS:
        return routes.CHECKS[(source, target)]  # None: declared unverified
    if source in routes.RUNNERS and target in routes.RUNNERS:
        return routes.Check(routes.RUNNERS[source], source, routes.RUNNERS[target])
    return None


def stacks_needed(check):
    return [check.reference.stack, check.result.stack, routes.COMPARE.stack]


def mode_of(values):
    """The quantization mode that picks the tolerance: --quantize, or TF.js weight quantization."""
    if "quantize" in values:
        return str(values["quantize"])
    for bits in ("uint8", "uint16", "float16"):
        if values.get(f"quantize_{bits}") not in (None, False):
            return f"weights_{bits}"
    return "none"


def plan_runs(check, src_path, from_step, artifact, values, images, work):
    """The three StepRuns of a verification (as data; the pipeline executes them in order).

    `from_step`: the reference model is an artifact of a step of the route, not the user's input."""
    src_runner, dst_runner = check.reference, check.result
    source = src_runner.format
    src_path, artifact, work = Path(src_path), Path(artifact), Path(work)
    ref_dir, got_dir, cmp_dir = work / "verify-source", work / "verify-result", work / "verify-compare"
    src_in = f"/in/model/{src_path.name}"
    # a step's artifact comes with its folder (files beside it, e.g. ssd.json); a user's input alone
    with_folder = from_step or formats.get(source).with_folder
    inputs = {str(src_path.parent): "/in/model"} if with_folder else {str(src_path): src_in}
    option_inputs, mounted = opts_mod.mounts(src_runner.options + ("sample_input",), values)
    inputs.update(option_inputs)
    ref_args = ["--format", source, "--input", src_in, "--make-inputs", "--seed", str(values.get("seed", 0))]
    ref_args += opts_mod.as_args(src_runner.options + ("sample_input",), values, mounted)
    ref = StepRun("verify_source", src_runner.stack, *images[src_runner.stack], src_runner.script, ref_args,
                  inputs, ref_dir)
    # every reference runner writes inputs.json (the TF.js runtime reads no .npz); artifacts come with their folder
    got_args = ["--format", dst_runner.format, "--input", "/in/model/" + artifact.name, "--inputs",
                "/in/ref/inputs.json"]
    got_args += opts_mod.as_args(dst_runner.options, values, {})
    got = StepRun("verify_result", dst_runner.stack, *images[dst_runner.stack], dst_runner.script, got_args,
                  {str(artifact.parent): "/in/model", str(ref_dir): "/in/ref"}, got_dir)
    cmp_args = ["--ref", "/in/ref", "--got", "/in/got", "--mode", mode_of(values)]
    if "tolerance" in values:
        cmp_args += ["--tolerance", str(values["tolerance"])]
    cmp = StepRun("compare", routes.COMPARE.stack, *images[routes.COMPARE.stack], routes.COMPARE.script, cmp_args,
                  {str(ref_dir): "/in/ref", str(got_dir): "/in/got"}, cmp_dir)
    return [ref, got, cmp]


def collect(runs, keep_dir):
    """Read the compare result; keep the verification inputs next to the artifacts; return the record."""
    ref, got, cmp = runs
    record = json.loads((Path(cmp.out_dir) / "verification.json").read_text())
    ref_info = json.loads((Path(ref.out_dir) / "run.json").read_text())
    got_info = json.loads((Path(got.out_dir) / "run.json").read_text())
    record["inputs"] = {"origin": ref_info.get("origin"), "tensors": ref_info.get("inputs"),
                        "file": "verification/inputs.npz"}
    record["source_outputs"] = ref_info.get("outputs")
    record["result_outputs"] = got_info.get("outputs")
    if "tensors" in got_info:
        record["result_tensors"] = got_info["tensors"]
    layout = {k: got_info[f"{k}_layout"] for k in ("input", "output") if got_info.get(f"{k}_layout")}
    if layout:  # NCHW reference vs NHWC conversion: how inputs were fed and outputs read back
        record["layout"] = layout
    if "transpose_ops" in got_info:
        record["transpose_ops"] = got_info["transpose_ops"]
    if got_info.get("checks"):
        record["checks"] = got_info["checks"]
        record["passed"] = bool(record.get("passed")) and all(c["passed"] for c in got_info["checks"])
    keep_dir = Path(keep_dir)
    keep_dir.mkdir(parents=True, exist_ok=True)
    for folder, name, kept in ((ref.out_dir, "inputs", "inputs"), (ref.out_dir, "outputs", "source_outputs"),
                               (got.out_dir, "outputs", "result_outputs")):
        for ext in (".npz", ".json"):
            if (Path(folder) / (name + ext)).exists():
                shutil.copyfile(Path(folder) / (name + ext), keep_dir / (kept + ext))
                break
    record["inputs"]["file"] = next(f"verification/{p.name}" for p in sorted(keep_dir.glob("inputs.*")))
    return record


def check(record):
    """Raise VerificationFailed with the worst output named, when parity failed."""
    if record.get("passed"):
        return
    failed_checks = [c for c in record.get("checks", []) if not c["passed"]]
    if failed_checks:
        c = failed_checks[0]
        raise VerificationFailed(f"verification failed: {c['name']}: {c['detail']}")
    if not record.get("outputs"):
        raise VerificationFailed(f"verification failed: {record.get('reason', 'no outputs to compare')}")
    bad = [o for o in record["outputs"] if not o.get("passed")]
    worst = max(bad, key=lambda o: o.get("max_rel_err", float("inf")))
    if "reason" in worst:
        detail = f"output '{worst['name']}': {worst['reason']} ({worst['shape']} vs {worst['result_shape']})"
    else:
        if "max_err_steps" in worst:
            detail = (f"output '{worst['name']}' differs by {worst['max_err_steps']:.3g} quantization steps "
                      f"(max abs {worst['max_abs_err']:.3g}), tolerance {record['tolerance']:g} steps")
        else:
            detail = (f"output '{worst['name']}' differs by {worst['max_rel_err']:.3g} of its scale "
                      f"(max abs {worst['max_abs_err']:.3g}), tolerance {record['tolerance']:g} for mode "
                      f"{record['mode']}")
    raise VerificationFailed(f"verification failed: {detail}; --tolerance loosens it, --no-verify skips it")
