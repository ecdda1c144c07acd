"""Batch conversion: the jobs of a YAML file (each FROM, INPUT, OUTPUT_DIR, TO and flags), at most N at once. A
failed job does not stop the others; one summary comes at the end (a table, or JSON for machines), and the exit code
says whether all passed.

Stack images are made ready once, before any job starts (so no two jobs build the same image). Each job is an
ordinary `convert` (its own staging and manifest) run in a thread; its log lines carry its name. The jobs share
one engine session, so the stacks' warm workers (orchestrator/workers.py) serve job after job: their steps' folders
go to one work root, and the workers see the folders holding the jobs' inputs, read-only.
"""

import json
import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator import images, pipeline, protocol
from orchestrator.errors import InputError, OrchestratorError, UsageError


@dataclass
class BatchJob:
    name: str
    source: str
    input: Path
    output_dir: Path
    to: str = "tflite"
    options: dict = field(default_factory=dict)
    verify: bool = True
    force: bool = False


def read_jobs(path):
    """The jobs of a jobs file, checked against schemas/batch.schema.json; relative paths from its folder."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    try:
        doc = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}" if where is not None else ""
        raise InputError(path, f"not valid YAML{at} ({getattr(exc, 'problem', None) or type(exc).__name__})") from None
    why = protocol.problem("batch", doc)
    if why:
        raise InputError(path, f"not a jobs file: {why}")
    base, defaults = path.resolve().parent, doc.get("defaults") or {}
    jobs, names, outputs = [], set(), set()
    for i, given in enumerate(doc["jobs"], 1):
        entry = {**defaults, **given, "flags": {**(defaults.get("flags") or {}), **(given.get("flags") or {})}}
        missing = [k for k in ("from", "input", "output_dir") if k not in entry]
        if missing:
            raise InputError(path, f"job {i} has no {', '.join(missing)}")
        name = entry.get("name") or f"job{i}"
        output = (base / entry["output_dir"]).resolve()
        if name in names:
            raise InputError(path, f"two jobs are named '{name}'")
        if output in outputs:
            raise InputError(path, f"job '{name}' writes {output}, which another job writes too")
        names.add(name)
        outputs.add(output)
        jobs.append(BatchJob(name, entry["from"], (base / entry["input"]).resolve(), output, entry.get("to", "tflite"),
                             entry["flags"], entry.get("verify", True), entry.get("force", False)))
    return jobs


def prepare(engine, jobs, build_missing=True, log=None):
    """Plan every job and make the images they need ready (and, on a swarm, placeable: engine.place); {name: error}
    for jobs that cannot even be planned."""
    stacks, errors = [], {}
    for job in jobs:
        try:
            planned = pipeline.plan_job(job.source, job.input, job.to, job.options, job.verify)
        except OrchestratorError as exc:
            errors[job.name] = exc
            continue
        stacks += [s for s in planned.stacks() if s not in stacks]
    if stacks:
        ready = images.ready(engine, stacks, build_missing, log=log)
        place = getattr(engine, "place", None)
        if place is not None:
            place([image.tag for image in ready.values()])
    return errors


def read_only_roots(jobs):
    """The host folders a batch's workers read: each input (a folder, or the folder holding a file) and each
    flag's file or folder."""
    roots = []
    for job in jobs:
        paths = [Path(job.input)] + [Path(v) for v in job.options.values() if isinstance(v, (str, Path)) and v]
        for path in paths:
            try:
                if path.exists():
                    roots.append(str(path if path.is_dir() else path.parent))
            except OSError:  # not a path after all (e.g. a value too long for one)
                continue
    return roots


CURRENT = threading.local()  # .job: the name of the job this thread runs (a swarm service's label)


def run_one(make_engine, job, memory, timeout, log, work_root=None, status=None):
    started = time.monotonic()
    prefixed = (lambda line: log(f"[{job.name}] {line}")) if log else None
    record = {"name": job.name, "from": job.source, "to": job.to, "input": str(job.input),
              "output_dir": str(job.output_dir)}
    CURRENT.job = job.name
    if status is not None:
        status.update(job.name, state="running", started=time.time())
    try:
        record = _run_one(make_engine, job, memory, timeout, prefixed, work_root, record, started)
    finally:
        CURRENT.job = None
    if status is not None:
        status.update(job.name, state="passed" if record["passed"] else "failed", seconds=record["seconds"],
                      error=record.get("error"))
    return record


def _run_one(make_engine, job, memory, timeout, prefixed, work_root, record, started):
    try:
        manifest = pipeline.convert(make_engine(), job.source, job.input, job.output_dir, to=job.to,
                                    options=dict(job.options), verify=job.verify, force=job.force, memory=memory,
                                    timeout=timeout, log=prefixed, work_root=work_root)
    except OrchestratorError as exc:
        return dict(record, passed=False, exit_code=exc.exit_code, error=str(exc),
                    seconds=round(time.monotonic() - started, 2))
    except Exception as exc:  # a bug: this job fails, the others go on
        return dict(record, passed=False, exit_code=1, error=f"internal error: {type(exc).__name__}: {exc}",
                    seconds=round(time.monotonic() - started, 2))
    v = manifest.get("verification") or {}
    worst = max((o.get("max_rel_err") or 0.0 for o in v.get("outputs") or []), default=None)
    runs = list(manifest["steps"]) + list(v.get("steps") or [])
    return dict(record, passed=True, exit_code=0, seconds=round(time.monotonic() - started, 2),
                verified=not v.get("skipped"), max_rel_err=worst, cached_runs=sum(1 for r in runs if r.get("cached")),
                runs=len(runs), artifacts=manifest["artifacts"])


def run_batch(make_engine, jobs, workers=1, build_missing=True, memory="8g", timeout=3600.0, log=None,
              work_dir=None, status=None, on_interrupt=None):
    """Run the jobs, at most `workers` at once; return one record per job, in the file's order. `work_dir`: where
    the steps' folders go (a swarm's shared root; default the user cache); `status`: a BatchStatus told each job's
    progress; `on_interrupt`: called when the batch is interrupted, before the running jobs are waited for (a swarm
    engine's close, which removes their services)."""
    if int(workers) < 1:
        raise UsageError(f"-j {workers}: run at least one job at a time")
    unplanned = prepare(make_engine(), jobs, build_missing, log)
    records = {name: {"name": name, "passed": False, "exit_code": exc.exit_code, "error": str(exc), "seconds": 0.0}
               for name, exc in unplanned.items()}
    todo = [job for job in jobs if job.name not in unplanned]
    if status is not None:
        status.start(jobs, records)
    if work_dir is None:
        from orchestrator.cache import default_root

        work_dir = default_root() / "work"  # disk, not the memory of a tmpfs /tmp
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    work_root = Path(tempfile.mkdtemp(prefix="batch-", dir=work_dir))
    try:
        with make_engine().session(rw=[work_root], ro=read_only_roots(todo)) as engine:
            with ThreadPoolExecutor(max_workers=int(workers)) as pool:
                futures = {job.name: pool.submit(run_one, lambda: engine, job, memory, timeout, log, work_root,
                                                 status)
                           for job in todo}
                try:
                    for name, future in futures.items():
                        records[name] = future.result()
                except BaseException:
                    for future in futures.values():
                        future.cancel()
                    if on_interrupt is not None:
                        on_interrupt()
                    raise
    finally:
        shutil.rmtree(work_root, ignore_errors=True)
        if status is not None:
            status.finish()
    return [records[job.name] for job in jobs]


class BatchStatus:
    """A batch's progress in a JSON file (written whole, then renamed), for `batch --swarm --status` to read while
    it runs: each job's state (pending, running, passed, failed), start and seconds."""

    def __init__(self, path):
        self.path, self._lock, self.doc = Path(path), threading.Lock(), {}

    def start(self, jobs, failed):
        self.doc = {"pid": os.getpid(), "started": time.time(), "finished": None,
                    "jobs": {job.name: {"state": "failed" if job.name in failed else "pending", "started": None,
                                        "seconds": 0.0 if job.name in failed else None,
                                        "error": failed[job.name]["error"] if job.name in failed else None}
                             for job in jobs}}
        self._write()

    def update(self, name, **fields):
        with self._lock:
            self.doc["jobs"][name].update(fields)
            self._write()

    def finish(self):
        with self._lock:
            if self.doc:
                self.doc["finished"] = time.time()
                self._write()

    def _write(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(f".{self.path.name}.{os.getpid()}.partial")
        partial.write_text(json.dumps(self.doc, indent=1))
        partial.replace(self.path)


def read_status(path):
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise InputError(path, f"not a batch status file ({exc})") from None


def process_alive(pid):
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, TypeError, ValueError):
        return True
    return True


def status_table(doc, running, now=None):
    """`batch --swarm --status`: one row per job (state, seconds; for a running job its live steps: step, node,
    state, seconds) and a count."""
    now = now or time.time()
    rows = [("job", "state", "seconds", "step / error")]
    for name, job in doc["jobs"].items():
        seconds = job["seconds"] if job["seconds"] is not None else (now - job["started"] if job["started"] else None)
        live = running.get(name) or []
        detail = "; ".join(f"{r['step']} on {r['node']} ({r['state']}, {r['seconds']:.0f} s)" for r in live)
        rows.append((name, job["state"], "-" if seconds is None else f"{seconds:.1f}", detail or job["error"] or ""))
    widths = [max(len(str(row[i])) for row in rows) for i in range(3)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row[:3], widths)) + "  " + str(row[3]) for row in rows]
    counts = {}
    for job in doc["jobs"].values():
        counts[job["state"]] = counts.get(job["state"], 0) + 1
    lines.append(", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
                 + ("; finished" if doc.get("finished") else "; running" if process_alive(doc.get("pid"))
                    else f"; stopped (its process {doc.get('pid')} is gone)"))
    return "\n".join(lines)


def table(records, seconds):
    rows = [("job", "route", "result", "seconds", "max error", "output / error")]
    for r in records:
        route = f"{r.get('from', '?')} -> {r.get('to', '?')}"
        if r["passed"]:
            err = "-" if r.get("max_rel_err") is None else f"{r['max_rel_err']:.2g}"
            cached = f" ({r['cached_runs']}/{r['runs']} cached)" if r.get("cached_runs") else ""
            rows.append((r["name"], route, "passed" + cached, f"{r['seconds']:.1f}", err, r["output_dir"]))
        else:
            rows.append((r["name"], route, f"FAILED (exit {r['exit_code']})", f"{r['seconds']:.1f}", "-",
                         r["error"]))
    widths = [max(len(str(row[i])) for row in rows) for i in range(5)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row[:5], widths)) + "  " + str(row[5]) for row in rows]
    passed = sum(1 for r in records if r["passed"])
    lines.append(f"{passed} of {len(records)} jobs passed in {seconds:.1f} s")
    return "\n".join(lines)


def as_json(records, seconds, workers):
    return json.dumps({"passed": all(r["passed"] for r in records), "jobs": records, "seconds": round(seconds, 2),
                       "workers": workers}, indent=2)
