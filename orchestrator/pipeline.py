"""`convert`, as its stages: plan -> prepare the input -> run the chain -> verify -> place the artifacts -> write the
manifest -> commit. Each stage is a plain function over plain records; nothing here knows a format or an option by
name (formats own their input, steps and options are records: formats.py, inputs.py, routes.py)."""

import contextlib
import datetime
import json
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from orchestrator import __version__, formats, images, planner, protocol, routes
from orchestrator import options as opts_mod
from orchestrator import report as report_mod
from orchestrator import verify as verification_mod
from orchestrator.errors import AttemptsFailed, EnvironmentProblem, InputError, MissingOption, OrchestratorError
from orchestrator.errors import UsageError
from orchestrator.errors import VerificationFailed
from orchestrator.inputs import Mounted, file_hashes, sha256_file
from orchestrator.runner import StepRun, run_record, execute
from orchestrator.staging import Staging


@dataclass
class Job:
    """A planned conversion: the chain of steps, the validated options, the checked input and its verification."""

    source: str
    to: str
    chain: list
    values: dict
    input: object  # inputs.Source
    producer: object = None  # producers.Producer: who wrote the input, when its format records it
    verification: verification_mod.Verification = None
    skipped: str = ""  # why there is no verification
    preludes: list = field(default_factory=list)  # [Prelude]: model-valued options translated before the chain
    attempts: list = field(default_factory=list)  # [(value, Job)]: a step-choosing option given "auto"
    auto: str = ""  # that option's name
    left_out: list = field(default_factory=list)  # attempt records of values whose route cannot take the options
    report: bool = True  # read the result's facts for report.html (report.py)

    def stacks(self):
        if self.attempts:
            names = []
            for _, job in self.attempts:
                names += [s for s in job.stacks() if s not in names]
            return names
        names = [s for p in self.preludes for s in planner.stacks_of(p.chain)]
        names += [s for s in planner.stacks_of(self.chain) if s not in names]
        names += [s for s in (self.verification.stacks() if self.verification else []) if s not in names]
        if self.report:
            facts = report_mod.facts_stack(self.to, self.chain)
            names += [facts] if facts not in names else []
        return names


@dataclass
class Prelude:
    """A model given as an option that the step taking it cannot read (e.g. a Keras 3 --base_model for tf2): the
    chain to the option's `translated_as` format runs on it first, and the step gets the result."""

    option: str
    chain: list
    source: object  # inputs.Source of the option's file
    producer: object


@dataclass
class Produced:
    """What a step left in its output folder: its main artifact and everything it listed in step.json."""

    folder: Path
    artifact: str
    names: list = field(default_factory=list)


# -- plan ----------------------------------------------------------------------------------------------------
def producer_of(source, input_path):
    """Who wrote INPUT (when its format records it): it picks the stack that reads the file."""
    if input_path is None:
        return None
    return planner.newest_if_unrecorded(source, formats.get(source).adapter.producer(input_path))


def plan(source, to, options=None, complete=True, producer=None):
    """Find the chain and validate the options against it: (chain, values). `complete`: the options the chain
    requires must be there (`orchestrator plan` shows them instead)."""
    formats.public(source)
    formats.public(to)
    chain = planner.plan(source, to, given=options, producer=producer)
    return chain, opts_mod.validate(chain, options or {}, complete=complete)


def auto_option(options):
    """(key as given, option name) of the step-choosing option (a Step.when) given the value "auto", or None."""
    for key, value in (options or {}).items():
        name = str(key).replace("-", "_")
        if str(value) == "auto" and any(step.chosen_by(name) for step in routes.STEPS):
            return key, name
    return None


def plan_job(source, input_path, to=routes.DEFAULT_TARGET, options=None, verify=True, report=True):
    """Plan a conversion and check its input; no container runs. `report`: read the result's facts for
    report.html."""
    producer = producer_of(source, input_path)
    why = planner.unreadable(source, producer)
    if why:
        raise InputError(input_path, why)
    auto = auto_option(options)
    if auto:
        return plan_attempts(source, input_path, to, options, verify, producer, *auto, report=report)
    try:
        chain, values = plan(source, to, options, producer=producer)
    except MissingOption as exc:  # said of the input it is missing for
        raise InputError(input_path, str(exc)) from None
    job = Job(source, to, chain, values, formats.check(source, input_path, values), producer,
              preludes=plan_preludes(chain, values), report=report)
    if not verify:
        job.skipped = "--no-verify"
        return job
    check = verification_mod.check_for(chain, values, producer)
    if check is None:
        job.skipped = f"no verification for {source} -> {to} yet"
    else:
        job.verification = verification_mod.Verification(check, values)
    return job


def attempt_values(name, source, to, producer=None):
    """The values of step-choosing option `name` that `auto` tries from `source` to `to`; refused when none."""
    values = planner.choosing_values(name, source, to, producer=producer)
    if not values:
        raise UsageError(f"--{name} auto: no route from {source} to {to} has a choice of --{name}")
    return values


def plan_attempts(source, input_path, to, options, verify, producer, key, name, report=True):
    """One job per value of option `name` that gives a route; the first one stands for all of them."""
    if not verify:
        raise UsageError(f"--{name} auto keeps the result that verifies: it cannot run with --no-verify")
    attempts, left_out = [], []
    for value in attempt_values(name, source, to, producer):
        try:
            attempts.append((value, plan_job(source, input_path, to, {**options, key: value}, verify, report)))
        except UsageError as exc:  # e.g. an option only the other converter takes: that attempt is left out
            left_out.append({name: value, "passed": False, "left_out": str(exc)})
    if not attempts:
        raise UsageError(f"--{name} auto: no attempt can run: " + "; ".join(
            f"{a[name]}: {a['left_out']}" for a in left_out))
    first = attempts[0][1]
    return replace(first, values={**first.values, name: "auto"}, attempts=attempts, auto=name, left_out=left_out)


def plan_preludes(chain, values):
    """[Prelude] for the model-valued options (Option.model_format) whose file the step taking them cannot read."""
    found = []
    for name, value in values.items():
        option = routes.OPTIONS[name]
        if not (option.model_format and option.translated_as):
            continue
        consumer = next((step for step in chain if name in step.options), None)
        fmt = formats.get(option.model_format)
        producer = planner.newest_if_unrecorded(option.model_format, fmt.adapter.producer(value))
        if consumer is None or producer is None or images.get_stack(consumer.stack).reads_file(producer):
            continue
        why = planner.unreadable(option.model_format, producer)
        if why:
            raise InputError(value, why)
        steps = planner.plan(option.model_format, option.translated_as, producer=producer)
        found.append(Prelude(name, steps, formats.check(option.model_format, value), producer))
    return found


def run_preludes(engine, job, ready, work, memory="8g", timeout=3600.0, log=None):
    """Run each prelude; return (their step records, the values the chain runs with)."""
    records, values = [], dict(job.values)
    for prelude in job.preludes:
        folder = work / f"option-{prelude.option}"
        first = formats.get(prelude.chain[0].source).adapter.prepare(prelude.source, {}, folder / "input")
        steps, produced = run_chain(engine, prelude.chain, {}, first, ready, folder, memory, timeout, log)
        records += [{**record, "for_option": prelude.option, "producer": prelude.producer.to_json()}
                    for record in steps]
        result = produced[prelude.chain[-1].target]
        values[prelude.option] = result.folder / result.artifact
    return records, values


# -- run the chain ---------------------------------------------------------------------------------------------
def step_run(i, step, model, values, ready, work, report=False):
    """The StepRun of step i on `model` (an inputs.Mounted: the user's input or the previous step's output);
    `report`: its result is the one report.html reads."""
    inputs = dict(model.mounts)
    option_inputs, mounted = opts_mod.mounts(step.options, values)
    inputs.update(option_inputs)
    args = list(step.args) + ["--input", model.model] + list(model.args)
    args += opts_mod.as_args(step.options, values, mounted)
    if step.checks_itself:  # judged on the verification's inputs, by the verification's criterion
        given_inputs, given = verification_mod.plan_mounts(values)
        inputs.update(given_inputs)
        args += ["--plan", json.dumps(verification_mod.input_plan(values, given, mode="none"))]
    if step.float_reference:  # the twin only serves the report: without one, no second conversion
        args += ["--float_reference", "true" if report else "false"]
    return StepRun(step.name, ready[step.stack], step.script, args, inputs, work / f"{i}-{step.name}")


def as_input(produced):
    """A step's output as the next step's (or the reference runner's) input: its folder comes along."""
    return Mounted({str(produced.folder): protocol.MODEL_DIR}, f"{protocol.MODEL_DIR}/{produced.artifact}")


def run_chain(engine, chain, values, first, ready, work, memory="8g", timeout=3600.0, log=None, report=False):
    """Run every step in its stack; return (the manifest's step records, {format: Produced}). `report`: the last
    step's result is read for report.html."""
    records, produced, model = [], {}, first
    for i, step in enumerate(chain, 1):
        run = step_run(i, step, model, values, ready, work, report=report and i == len(chain))
        if log:
            log(f"step {i}/{len(chain)}: {step.name} ({step.source} -> {step.target}) in {run.image.tag}")
        meta, result = execute(engine, run, memory=memory, timeout=timeout, log=log)
        records.append({
            "name": step.name, "from": step.source, "to": step.target, "stack": step.stack,
            "image": run.image.tag, "image_id": run.image.id, "command": run.command(),
            "seconds": round(result.seconds, 2), "versions": meta.get("versions", {}), "info": meta.get("info", {}),
            **run_record(result),
        })
        artifact = formats.get(step.target).artifact
        if not (run.out_dir / artifact).exists():
            raise UsageError(f"step {step.name} did not produce {artifact}")  # a bug in the step table
        produced[step.target] = Produced(run.out_dir, artifact, meta.get("artifacts") or [artifact])
        model = as_input(produced[step.target])
    return records, produced


# -- verify ----------------------------------------------------------------------------------------------------
def verify_stage(engine, job, first, produced, ready, work, keep_dir, memory="8g", timeout=3600.0, log=None,
                 source=None):
    """The verification record: run against the user's input or the step artifact the check names (`source`: its
    source run started already, start_source_run)."""
    if job.verification is None:
        return {"skipped": True, "reason": job.skipped}
    check = job.verification.check
    reference = first if check.reference_format == job.source else as_input(produced[check.reference_format])
    final = produced[job.to]
    return job.verification.run(engine, reference, final.folder / final.artifact, ready, work, keep_dir,
                                memory=memory, timeout=timeout, log=log, source=source)


# -- place the artifacts and write the manifest ----------------------------------------------------------------
def place_artifacts(job, produced, stage):
    """Every step's artifacts land at the top of OUTPUT_DIR, the final one listed first (named as the options ask)."""
    final = produced[job.to]
    for old, new in opts_mod.artifact_names(job.values, job.to).items():
        (final.folder / old).rename(final.folder / new)
        final.names = [new if n == old else n for n in final.names]
        final.artifact = new if final.artifact == old else final.artifact
    placed = []
    for fmt in [step.target for step in reversed(job.chain)]:
        for name in produced[fmt].names:
            if (stage.path / name).exists() or not (produced[fmt].folder / name).exists():
                continue
            placed.append(stage.place(produced[fmt].folder / name, name))
    return placed


def option_record(value):
    if isinstance(value, (Path, opts_mod.CodeRef)):
        return str(value)
    if isinstance(value, tuple):
        return ",".join(f"{a}:{b}" for a, b in value)
    return value


def manifest_of(job, input_hashes, first, steps, placed, stage, verification, started, converted_at):
    manifest = {
        "orchestrator": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "route": {"from": job.source, "to": job.to, "steps": [s.name for s in job.chain]},
        "input": {"path": str(job.input.path), "sha256": input_hashes},
        "options": {k: option_record(v) for k, v in job.values.items()},
        "steps": steps,
        "artifacts": {p.relative_to(stage.path).as_posix() + ("/" if p.is_dir() else ""):
                      file_hashes(p) if p.is_dir() else sha256_file(p) for p in placed},
        "verification": verification,
        "timings": {"convert_seconds": round(converted_at - started, 2),
                    "total_seconds": round(time.monotonic() - started, 2)},
    }
    if first.facts:
        manifest["input"]["model"] = dict(first.facts)
    if job.producer is not None:
        manifest["input"]["producer"] = job.producer.to_json()
    return manifest


# -- the whole conversion ------------------------------------------------------------------------------------
@dataclass
class Outcome:
    """What running one job left: its step records, artifacts and verification record."""

    job: Job
    first: Mounted
    steps: list
    produced: dict
    verification: dict
    converted_at: float
    facts: dict = None  # the result's facts for report.html (report.model_facts), when reported

    def checked(self):
        """Raise VerificationFailed unless its verification passed (or was skipped)."""
        if not self.verification.get("skipped"):
            verification_mod.check(self.verification)
        return self


def input_paths(job):
    """Every host file and folder the job reads: its input (and the files checked with it), file-valued options."""
    paths = [job.input.path if job.input.path.exists() else job.input.state.get("file", job.input.path)]
    paths += list(job.input.files.values())
    for value in job.values.values():
        if isinstance(value, Path):
            paths.append(value)
        elif isinstance(value, opts_mod.CodeRef):
            paths.append(value.path)
        elif isinstance(value, tuple):
            paths += [v[1] for v in value if isinstance(v, tuple) and len(v) == 2 and isinstance(v[1], Path)]
    return paths


def read_only_roots(first, values):
    """The host paths a job's containers read: the prepared input's mounts and every file-valued option's."""
    return list(first.mounts) + list(opts_mod.mounts(list(values), values)[0])


def run_job(engine, job, work, keep_dir, ready, memory="8g", timeout=3600.0, log=None):
    first = formats.get(job.source).adapter.prepare(job.input, job.values, work / "input")
    work.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        # left in this order: the session's end stops a background run still going, then its thread is waited for
        background = stack.enter_context(ThreadPoolExecutor(max_workers=1, thread_name_prefix="verify-source"))
        # warm workers for the whole job (orchestrator/workers.py): they see `work` and the inputs
        engine = stack.enter_context(engine.session(rw=[work], ro=read_only_roots(first, job.values)))
        source = start_source_run(engine, job, first, ready, work, memory, timeout, log, background)
        translated, values = run_preludes(engine, job, ready, work, memory, timeout, log)
        steps, produced = run_chain(engine, job.chain, values, first, ready, work, memory, timeout, log,
                                    report=job.report)
        converted_at = time.monotonic()
        verification = verify_stage(engine, job, first, produced, ready, work, keep_dir, memory, timeout, log,
                                    source)
        facts = report_mod.model_facts(engine, job, produced, ready, work, memory, timeout, log) if job.report \
            else None
    return Outcome(job, first, translated + steps, produced, verification, converted_at, facts)


def start_source_run(engine, job, first, ready, work, memory, timeout, log, background):
    """The verification's source run, started in the background now (a future), when it needs nothing the
    conversion makes (its reference is the user's own model) and the engine stops background runs when its session
    ends (warm workers: engine.stops_runs_on_close): it then runs on the second core while the conversion runs.
    Else None, and it runs in its turn."""
    v = job.verification
    if v is None or v.check.reference_format != job.source or not getattr(engine, "stops_runs_on_close", False):
        return None
    return background.submit(v.run_source, engine, first, ready, work, memory, timeout, log)


def run_attempts(engine, job, stage, ready, memory="8g", timeout=3600.0, log=None):
    """Run every attempt; return (the chosen Outcome, the manifest's attempt records). The chosen one verified and
    has the fewest TRANSPOSE ops, then the smallest artifact. Raise AttemptsFailed when none verified."""
    tried = []
    for value, sub in job.attempts:
        work = stage.work / f"attempt-{value}"
        if log:
            log(f"attempt: --{job.auto} {value}")
        outcome, error = None, None
        started = time.monotonic()
        try:
            outcome = run_job(engine, sub, work, work / "verification", ready, memory, timeout, log)
            outcome.checked()
        except EnvironmentProblem:
            raise
        except OrchestratorError as exc:  # a failed step, a rejected input or a failed verification
            error = exc
        tried.append((value, outcome, error, round(time.monotonic() - started, 2)))
    records = [attempt_record(job.auto, *one) for one in tried] + list(job.left_out)
    passed = [(record, outcome) for record, (_, outcome, error, _) in zip(records, tried) if error is None]
    if not passed:
        failed_checks = all(isinstance(error, VerificationFailed) for _, _, error, _ in tried)
        raise AttemptsFailed(f"--{job.auto} auto: no attempt gave a verified result: "
                             + "; ".join(f"{r[job.auto]}: {r.get('error') or r['left_out']}" for r in records),
                             4 if failed_checks else 3)
    record, chosen = min(passed, key=lambda pair: (pair[0].get("transpose_ops") or 0, pair[0]["size_bytes"]))
    record["chosen"] = True
    return chosen, records


def attempt_record(name, value, outcome, error, seconds):
    record = {name: value, "seconds": seconds, "passed": error is None}
    if outcome is not None:
        final = outcome.produced[outcome.job.to]
        path = final.folder / final.artifact
        record.update(route=[s.name for s in outcome.job.chain],
                      size_bytes=sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir()
                      else path.stat().st_size)
        v = outcome.verification
        if v.get("outputs"):
            record["max_rel_err"] = max(o.get("max_rel_err", 0.0) for o in v["outputs"])
        if "transpose_ops" in v:
            record["transpose_ops"] = v["transpose_ops"]
    if error is not None:
        record["error"] = str(error)
    return record


def resolve_source(source, input_path, log=None):
    """(FROM, what detection saw or None): FROM as given, else detected from INPUT (formats.detect_format), which
    the log is told."""
    if source is not None:
        return str(source), None
    source, seen = formats.detect_format(input_path)
    if log:
        log(f"detected {source}: {input_path} is {seen}")
    return source, seen


def convert(engine, source, input_path, output_dir, to=routes.DEFAULT_TARGET, options=None, verify=True, force=False,
            build_missing=True, memory="8g", timeout=3600.0, log=None, build_options=None, work_root=None,
            report=None):
    """Convert and return the manifest (a dict). Raises OrchestratorError subclasses. `work_root`: where the steps'
    folders go (a batch's shared one), else inside the staging folder beside OUTPUT_DIR."""
    started = time.monotonic()
    if report is None:  # not said: ORCHESTRATOR_NO_REPORT=1 leaves the report out (as --no-report does)
        report = report_mod.enabled()
    source, detected = resolve_source(source, input_path, log)
    job = plan_job(source, input_path, to, options, verify, report)
    with Staging(output_dir, force, work_root, inputs=input_paths(job)) as stage:
        input_hashes = job.input.hashes()
        ready = images.ready(engine, job.stacks(), build_missing, build_options, log)
        attempts = None
        if job.attempts:
            outcome, attempts = run_attempts(engine, job, stage, ready, memory, timeout, log)
            # the chosen attempt's verification arrays are kept with the artifacts
            shutil.move(str(stage.work / f"attempt-{outcome.job.values[job.auto]}" / "verification"),
                        str(stage.path / "verification"))
        else:
            outcome = run_job(engine, job, stage.work, stage.path / "verification", ready, memory, timeout,
                              log).checked()
        placed = place_artifacts(outcome.job, outcome.produced, stage)
        manifest = manifest_of(outcome.job, input_hashes, outcome.first, outcome.steps, placed, stage,
                               outcome.verification, started, outcome.converted_at)
        if detected:
            manifest["input"]["detected"] = detected
        if attempts is not None:
            manifest["options"][job.auto] = "auto"
            manifest["attempts"] = attempts
        if outcome.facts is not None:
            manifest["model"] = report_mod.manifest_facts(outcome.facts)
            manifest["report"] = report_mod.FILE
        (stage.path / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
        if outcome.facts is not None:
            report_mod.write(stage.path, manifest, outcome.facts, job.input.path)
        manifest["output_dir"] = str(stage.commit())
        return manifest


def verify_files(engine, source, input_path, result_path, to=routes.DEFAULT_TARGET, options=None, build_missing=True,
                 memory="8g", timeout=3600.0, log=None, keep=None):
    """Verify an existing conversion: the source model against RESULT_PATH (a model of format `to`), exactly as
    `convert` verifies its own result. Returns the verification record; raises VerificationFailed (exit 4)."""
    source, _ = resolve_source(source, input_path, log)
    job = plan_job(source, input_path, to, options)
    result = formats.check(to, result_path).path
    if job.verification is None:
        raise UsageError(f"no verification for {source} -> {to} yet")
    reference = job.verification.check.reference_format
    if reference != source:
        if formats.get(reference).internal:
            raise UsageError(f"{source} -> {to} is verified against an intermediate artifact of the route "
                             f"({reference}); `orchestrator convert` verifies it")
        raise UsageError(f"{source} -> {to} is verified against the route's {reference} artifact; "
                         f"give that: orchestrator verify {reference} ...")
    keep_dir = Path(keep).absolute() if keep else None
    if keep_dir and keep_dir.exists() and any(keep_dir.iterdir()):
        raise UsageError(f"{keep_dir}: exists and is not empty")
    ready = images.ready(engine, job.verification.stacks(), build_missing, log=log)
    with tempfile.TemporaryDirectory(prefix="orchestrator-verify-") as tmp:
        work = Path(tmp)
        first = formats.get(source).adapter.prepare(job.input, job.values, work / "input")
        with engine.session(rw=[work], ro=read_only_roots(first, job.values) + [str(result.parent)]) as engine:
            record = job.verification.run(engine, first, result, ready, work / "runs",
                                          keep_dir or work / "verification", memory=memory, timeout=timeout, log=log)
    verification_mod.check(record)
    return record


def summary(manifest):
    arts = ", ".join(manifest["artifacts"])
    line = (f"{manifest['route']['from']} -> {manifest['route']['to']}: {manifest['output_dir']}/{{{arts}, "
            f"manifest.json}}; {verification_mod.describe(manifest['verification'])}")
    if manifest.get("attempts"):
        line += "; " + attempts_line(manifest["attempts"])
    runs = list(manifest["steps"]) + list((manifest["verification"] or {}).get("steps") or [])
    cached = sum(1 for r in runs if r.get("cached"))
    if cached:
        line += f"; {cached} of {len(runs)} runs from the cache (--no-cache runs them)"
    return line


def attempts_line(attempts):
    """e.g. 'chose --converter litert-torch (2 TRANSPOSE, 1.2 MB) over onnx2tf (6 TRANSPOSE, 1.3 MB)'."""
    def facts(a):
        if "left_out" in a:
            return "left out"
        if not a["passed"]:
            return "failed"
        ops = f"{a['transpose_ops']} TRANSPOSE, " if "transpose_ops" in a else ""
        return f"{ops}{a['size_bytes'] / 1e6:.3g} MB"

    name = next(k for k in attempts[0] if k not in ATTEMPT_FIELDS)
    chosen = next(a for a in attempts if a.get("chosen"))
    others = [a for a in attempts if a is not chosen]
    return (f"chose --{name} {chosen[name]} ({facts(chosen)})"
            + (" over " + ", ".join(f"{a[name]} ({facts(a)})" for a in others) if others else ""))


ATTEMPT_FIELDS = ("seconds", "passed", "route", "size_bytes", "max_rel_err", "transpose_ops", "error", "chosen",
                  "left_out")
