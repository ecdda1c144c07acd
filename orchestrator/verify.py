"""Shared verification: the source model and the converted model run on the same inputs, each in its own
stack, and a compare step judges the difference (images/shared/parity.py: per distribution, degenerate outputs
judged on their logits, the tolerance grounded in the source's own float32 noise).

The inputs are an input plan the host writes and the reference runner carries out (images/shared/verify_io.py):
a batch of samples from each of several distributions, and the user's own samples (--sample_input, and the
--calibration data) first."""

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from orchestrator import options as opts_mod
from orchestrator import formats, images, protocol, routes
from orchestrator.errors import StepFailed, VerificationFailed
from orchestrator.runner import StepRun, run_record, execute

COMPARE_SCRIPT = "compare.py"  # images/shared/compare.py: in every stack that compares (stack.json compare_in)


@dataclass(frozen=True)
class Check:
    """How a route's result is verified: which model is the reference, and which runners run both."""

    reference: routes.Runner
    reference_format: str  # the format in the chain whose model the reference runs on
    result: routes.Runner

    @property
    def compare_stack(self):
        return images.get_stack(self.result.stack).compares_in


def _moved(runner, stack):
    """`runner` run in `stack` instead, when that stack runs its kind with the same script; else None."""
    if runner.kind in stack.runs_formats and stack.has_script(runner.script):
        return routes.Runner(runner.kind, stack.name, runner.script, runner.options)
    return None


def runner_for(fmt, producer=None):
    """The format's runner, in a stack that reads what `producer` wrote (stack.json "reads"), or None."""
    runner = formats.get(fmt).runner
    if runner is None or producer is None or images.get_stack(runner.stack).reads_file(producer):
        return runner
    return next((moved for stack in images.discover_stacks().values() if stack.reads_file(producer)
                 for moved in [_moved(runner, stack)] if moved), None)


def result_runner(step):
    """The runner of a step's result: its own `result_runner`, else its format's runner in the step's own stack
    when that stack runs the format (its interpreter matches its converter), else the format's runner."""
    if step.result_runner:
        return step.result_runner
    runner = formats.get(step.target).runner
    if runner is None or runner.stack == step.stack:
        return runner
    return _moved(runner, images.get_stack(step.stack)) or runner


def check_for(chain, values=None, producer=None):
    """The Check for a chain, derived from its records; or None when nothing can run its result or its source.

    The reference is the first model of the chain that a runner can run (the user's input, in a stack that reads
    it, else e.g. the Keras model built from a Darknet cfg), or the artifact of a step that takes an option
    changing what the model computes (e.g. --base_model). The result runs in `result_runner(last step)`."""
    values = values or {}
    models = [chain[0].source] + [step.target for step in chain[:-1]]
    for i, step in enumerate(chain):
        if any(routes.OPTIONS[o].new_reference for o in step.options if o in values):
            models = models[i + 1:i + 2]  # nothing when it is the last step: no model computes what it does
    runners = [(fmt, runner_for(fmt, producer if fmt == chain[0].source and i == 0 else None))
               for i, fmt in enumerate(models)]
    reference = next(((fmt, runner) for fmt, runner in runners if runner), None)
    if reference is None:
        return None
    if any(step.result_runner for step in chain[:-1]):
        return None  # a step's result needs that step's own runner, and the chain went on past it
    result = result_runner(chain[-1])
    if result is None:
        return None
    return Check(reference[1], reference[0], result)


# the random distributions every verification draws from (a batch of --verify_samples inputs each); "pixels"
# applies where an input's dtype (uint8) or the model (a 1/255 rescaling) says it takes pixel values
DISTRIBUTIONS = (
    {"name": "uniform", "kind": "uniform", "low": -1.0, "high": 1.0},
    {"name": "normal", "kind": "normal", "mean": 0.0, "std": 1.0},
    {"name": "image", "kind": "uniform", "low": 0.0, "high": 1.0},
    {"name": "pixels", "kind": "uniform", "low": 0.0, "high": 255.0, "when": "pixels"},
)
# modes whose activations are quantized with calibrated ranges: inputs outside the user's data mean nothing, so
# random distributions are reported but only the user's samples are judged (when there are any)
INTEGER_MODES = ("int8", "int8-full", "uint8")
GIVEN = ("sample_input", "calibration")  # the user's data, in the order it is preferred


def usable_given(name, path):
    """Whether a --sample_input/--calibration value holds arrays (a folder of images calibrates, not verifies)."""
    path = Path(path)
    if path.is_dir():
        return any(path.glob("*.npy"))
    return path.suffix in (".npy", ".npz")


def input_plan(values, mounted, mode=None):
    """The input plan (a JSON-able dict) for a reference runner or a self-checking step; `mounted` maps the
    GIVEN options to their container paths."""
    mode = mode or mode_of(values)
    given = [{"name": n, "file": mounted[n], "judged": True} for n in GIVEN
             if n in mounted and usable_given(n, values[n])]
    judge_random = not (given and mode in INTEGER_MODES)
    plan = {"seed": int(values.get("seed", 0)), "samples": int(values.get("verify_samples", 8)), "given": given,
            "distributions": [dict(d, judged=judge_random) for d in DISTRIBUTIONS]}
    if "tolerance" in values and mode_of(values) == "none":
        plan["tolerance"] = float(values["tolerance"])
    return plan


def plan_mounts(values):
    """({host path: container path}, {option: container path}) for the GIVEN options that are set."""
    return opts_mod.mounts([n for n in GIVEN if n in values], values)


def mode_of(values):
    """The quantization mode that picks the tolerance: --quantize, or TF.js weight quantization."""
    if "quantize" in values:
        return str(values["quantize"])
    for bits in ("uint8", "uint16", "float16"):
        if values.get(f"quantize_{bits}") not in (None, False):
            return f"weights_{bits}"
    return "none"


KEPT = (("verify-source", "inputs", "inputs"), ("verify-source", "outputs", "source_outputs"),
        ("verify-source", "logits", "source_logits"), ("verify-source", "perturbed", "source_perturbed"),
        ("verify-source", "perturbed_logits", "source_perturbed_logits"),
        ("verify-result", "outputs", "result_outputs"), ("verify-result", "logits", "result_logits"))


class Verification:
    """One verification: the reference runner makes the inputs (the input plan) and runs the reference model, the
    result runner runs the converted model on the same inputs, the compare step judges them. It plans, runs and
    collects its own three runs."""

    def __init__(self, check, values):
        self.check = check
        self.values = values

    def stacks(self):
        return [self.check.reference.stack, self.check.result.stack, self.check.compare_stack]

    def source_run(self, reference, ready, work):
        """The reference runner's StepRun: it makes the inputs and runs `reference` (inputs.Mounted) on them."""
        ref_runner, values = self.check.reference, self.values
        inputs = dict(reference.mounts)
        option_inputs, mounted = opts_mod.mounts(ref_runner.options, values)
        inputs.update(option_inputs)
        given_inputs, given = plan_mounts(values)
        inputs.update(given_inputs)
        ref_args = ["--format", ref_runner.kind, "--input", reference.model, "--plan",
                    json.dumps(input_plan(values, given))]
        ref_args += opts_mod.as_args(ref_runner.options, values, mounted)
        return StepRun("verify_source", ready[ref_runner.stack], ref_runner.script, ref_args, inputs,
                       Path(work) / "verify-source")

    def plan_runs(self, reference, result, ready, work):
        """The three StepRuns (as data). `reference`: the reference model as mounted (inputs.Mounted); `result`:
        the converted model (its folder is mounted: files beside it come along); `ready`: {stack: StackImage}."""
        got_runner, values = self.check.result, self.values
        result, work = Path(result), Path(work)
        ref = self.source_run(reference, ready, work)
        ref_dir, got_dir, cmp_dir = Path(ref.out_dir), work / "verify-result", work / "verify-compare"
        # every reference runner writes inputs.json (readable by every stack)
        got_args = ["--format", got_runner.kind, "--input", f"{protocol.MODEL_DIR}/{result.name}", "--inputs",
                    f"{protocol.REFERENCE_DIR}/inputs.json"]
        got_args += opts_mod.as_args(got_runner.options, values, {})
        got = StepRun("verify_result", ready[got_runner.stack], got_runner.script, got_args,
                      {str(result.parent): protocol.MODEL_DIR, str(ref_dir): protocol.REFERENCE_DIR}, got_dir)
        cmp_args = ["--ref", protocol.REFERENCE_DIR, "--got", protocol.RESULT_DIR, "--mode", mode_of(values)]
        if "tolerance" in values:
            cmp_args += ["--tolerance", str(values["tolerance"])]
        cmp = StepRun("compare", ready[self.check.compare_stack], COMPARE_SCRIPT, cmp_args,
                      {str(ref_dir): protocol.REFERENCE_DIR, str(got_dir): protocol.RESULT_DIR}, cmp_dir)
        return [ref, got, cmp]

    def run_source(self, engine, reference, ready, work, memory="8g", timeout=3600.0, log=None):
        """The source run alone: (meta, RunResult), as `run` would execute it (for `run`'s `source`)."""
        one = self.source_run(reference, ready, work)
        if log:  # not a phase line (progress.PHASE): the conversion's phases go on meanwhile
            log(f"alongside the conversion: {one.name} in {one.image.tag}")
        return execute(engine, one, memory=memory, timeout=timeout, log=log)

    def run(self, engine, reference, result, ready, work, keep_dir, memory="8g", timeout=3600.0, log=None,
            source=None):
        """Run the verification and return its record, with each run's time. `source`: a future of run_source
        started earlier (it overlapped the conversion), whose result stands for the source run."""
        started = time.monotonic()
        runs = self.plan_runs(reference, result, ready, work)
        steps = []
        for one in runs:
            if one.name == "verify_source" and source is not None:
                meta, outcome = source.result()
            else:
                if log:
                    log(f"verify: {one.name} in {one.image.tag}")
                meta, outcome = execute(engine, one, memory=memory, timeout=timeout, log=log)
            steps.append({"name": one.name, "stack": one.stack, "image": one.image.tag, "image_id": one.image.id,
                          "seconds": round(outcome.seconds, 2), "versions": meta.get("versions", {}),
                          **run_record(outcome)})
        record = self.collect(runs, keep_dir)
        record["steps"] = steps
        record["seconds"] = round(time.monotonic() - started, 2)
        return record

    @staticmethod
    def _run_info(run):
        info, why = protocol.read("run", Path(run.out_dir) / "run.json")
        if why:
            raise StepFailed(run.name, run.image.tag, 0, "", run.command(), reason=f"the runner broke its protocol: {why}")
        return info

    def collect(self, runs, keep_dir):
        """Read the compare result; keep every verification array next to the artifacts; return the record."""
        ref, got, cmp = runs
        record = json.loads((Path(cmp.out_dir) / "verification.json").read_text())
        ref_info, got_info = self._run_info(ref), self._run_info(got)
        groups = ref_info.get("groups") or []
        record["inputs"] = {"samples": ref_info.get("samples"), "specs": ref_info.get("input_specs"),
                            "distributions": groups,
                            "file": "verification/inputs.npz"}
        record["source_outputs"] = ref_info.get("outputs")
        record["result_outputs"] = got_info.get("outputs")
        record["logits_ops"] = {"source": ref_info.get("logits") or {}, "result": got_info.get("logits") or {}}
        if "tensors" in got_info:
            record["result_tensors"] = got_info["tensors"]
        layout = {k: got_info[f"{k}_layout"] for k in ("input", "output") if got_info.get(f"{k}_layout")}
        if layout:  # NCHW reference vs NHWC conversion: how inputs were fed and outputs read back
            record["layout"] = layout
        if "transpose_ops" in got_info:
            record["transpose_ops"] = got_info["transpose_ops"]
        if got_info.get("execution"):  # the TF.js runtime's call: predict, execute or executeAsync (and why)
            record["result_execution"] = got_info["execution"]
        if got_info.get("checks"):
            record["checks"] = got_info["checks"]
            record["passed"] = bool(record.get("passed")) and all(c["passed"] for c in got_info["checks"])
        keep_dir = Path(keep_dir)
        keep_dir.mkdir(parents=True, exist_ok=True)
        folders = {"verify-source": Path(ref.out_dir), "verify-result": Path(got.out_dir)}
        kept = []
        for folder, name, as_name in KEPT:
            for ext in (".npz", ".json"):
                if (folders[folder] / (name + ext)).exists():
                    shutil.copyfile(folders[folder] / (name + ext), keep_dir / (as_name + ext))
                    kept.append(f"verification/{as_name}{ext}")
                    break
        record["files"] = kept
        record["inputs"]["file"] = next(f for f in kept if f.startswith("verification/inputs."))
        return record


def check(record):
    """Raise VerificationFailed with one line naming the worst output, when parity failed."""
    if record.get("passed"):
        return
    failed_checks = [c for c in record.get("checks", []) if not c["passed"]]
    if failed_checks:
        c = failed_checks[0]
        raise VerificationFailed(f"verification failed: {c['name']}: {c['detail']}")
    if not record.get("outputs"):
        raise VerificationFailed(f"verification failed: {record.get('reason', 'no outputs to compare')}")
    bad = [o for o in record["outputs"] if not o.get("passed")]
    if not bad:  # every output within tolerance, none of them conclusive
        raise VerificationFailed(f"verification failed: {record.get('reason', 'inconclusive')}; verify on real "
                                 "inputs with --sample_input FILE.npy (or skip with --no-verify)")
    worst = max(bad, key=lambda o: o.get("max_rel_err", float("inf")))
    if "reason" in worst:
        detail = f"output '{worst['name']}': {worst['reason']} ({worst['shape']} vs {worst['result_shape']})"
    else:
        where = f" on {worst['worst_distribution']} inputs" if worst.get("worst_distribution") else ""
        stats = worst["by_distribution"].get(worst.get("worst_distribution"), {})
        if stats.get("basis") == "logits" and not stats.get("logits", {}).get("passed", True):
            lg = stats["logits"]
            detail = (f"output '{worst['name']}' is saturated{where}; its logits differ by {lg['max_rel_err']:.3g} "
                      f"of their scale (max abs {lg['max_abs_err']:.3g}), tolerance {worst['logits_tolerance']:.2g}")
        elif "max_err_steps" in worst:
            detail = (f"output '{worst['name']}' differs by {worst['max_err_steps']:.3g} quantization steps{where} "
                      f"(max abs {worst['max_abs_err']:.3g}), tolerance {worst['tolerance']:g} steps")
        else:
            detail = (f"output '{worst['name']}' differs by {worst['max_rel_err']:.3g} of its scale{where} "
                      f"(max abs {worst['max_abs_err']:.3g}), tolerance {worst['tolerance']:.2g} ("
                      f"{worst['tolerance_source']})")
    raise VerificationFailed(f"verification failed: {detail}; --tolerance loosens it, --no-verify skips it")


def describe(record):
    """The summary line's part about verification."""
    if record.get("skipped"):
        return f"verification skipped ({record['reason']})"
    dists = ", ".join(f"{d['name']} {d['count']}" for d in record["inputs"]["distributions"] if d.get("judged"))
    reported = [d["name"] for d in record["inputs"]["distributions"] if not d.get("judged")]
    outs = record["outputs"]
    if any("max_err_steps" in o for o in outs):
        worst = max(o.get("max_err_steps", 0.0) for o in outs)
        figure = f"max error {worst:.2g} quantization steps"
    else:
        worst = max((o.get("max_rel_err", 0.0) for o in outs), default=0.0)
        figure = f"max error {worst:.2g} of output scale"
    line = f"verified on {record['inputs']['samples']} inputs ({dists}"
    line += f"; {', '.join(reported)} reported only)" if reported else ")"
    line += f": {figure} (tolerance {record['tolerance']:.2g}, mode {record['mode']})"
    by_logits = [o["name"] for o in outs if "logits" in o.get("basis", "").split("+")]
    if by_logits:
        worst_logit = max(s["logits"]["max_rel_err"] for o in outs for s in o["by_distribution"].values()
                          if s.get("basis") == "logits")
        line += (f"; {', '.join(by_logits)} judged on logits where saturated or constant "
                 f"(max error {worst_logit:.2g})")
    if record.get("result_execution", "").startswith("executeAsync"):
        line += "; the TF.js graph model needs executeAsync() (execute() and predict() refuse its dynamic ops)"
    inconclusive = [o["name"] for o in outs if not o.get("conclusive")]
    if inconclusive:
        line += f"; inconclusive, not judged: {', '.join(inconclusive)}"
    return line
