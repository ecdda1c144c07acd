"""Warm workers: one container per stack per conversion (or per batch), in which every step and verification run of
that stack executes, so TensorFlow, torch or onnx2tf is imported once per stack instead of once per step.

A worker is an ordinary hardened container (the step's own ContainerSpec: no network, read-only root, caps dropped,
the host user, its memory limit) whose main process is the stack's step server (images/shared/step_server.py,
named by stack.json "worker"). It sees the conversion's folders, not one step's: the session's roots are mounted at
/w/0, /w/1, ... (the work folder read-write, the user's inputs read-only), and each step's command is rewritten
from its own container paths (/in/model, /out, ...) to the worker's. Steps talk to it through a control folder
(step_server.py describes the files). What a step prints is translated back, so messages and the cache key are the
same as in a fresh container.

The pool is an engine decorator: `with pool.session(rw=[work], ro=[inputs]) as engine:` gives an engine whose
`run` uses a worker when the spec's stack has one and every mount lies under the session's roots, and a fresh
container otherwise. A step that times out or dies of a signal (the memory limit) takes its worker down; the next
step of that stack starts a new one. Leaving the session removes its workers, also on an error or Ctrl-C.

A worker runs up to `slots` steps at once (the server forks each one): a conversion's source run and its conversion
share one, and a batch of N jobs at a time shares one per stack with 2N slots, so the stack's libraries are imported
once for the batch and its steps still run side by side on every core. Its memory limit is `slots` times the steps'
(what that many fresh containers had together). A step that takes its worker down lets its neighbours end first:
the worker takes no new step and is removed once the last one is over; a step stopped by its `watch` is killed alone
(CONTROL/ID.kill).
"""

import contextlib
import json
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path

from orchestrator.engine import WATCH_EVERY, Mount, RunResult
from orchestrator.errors import EnvironmentProblem
from orchestrator.runner import SCRATCH_DIR

WORKER_ROOT = "/w"
CONTROL = f"{WORKER_ROOT}/ctl"
POLL_SECONDS = 0.02
STATE_EVERY = 0.5  # how often a waiting step asks the engine whether its worker still runs
READY_TIMEOUT = 300.0  # a worker that has not imported its libraries by then is broken
GRACE_SECONDS = 30.0  # past a step's timeout, the host removes a worker that did not report it
HEARTBEAT_EVERY = 5.0  # the host touches each worker's CONTROL/alive this often ...
HEARTBEAT_TIMEOUT = 60.0  # ... and a worker whose host has been silent this long kills its steps and exits
SLOTS = 2  # steps a conversion's worker runs at once: its conversion step and the verification's source run
KILL_WAIT = 10.0  # a step told to stop (CONTROL/ID.kill) that has not ended by then takes its whole worker down


def enabled():
    """Warm workers are on unless ORCHESTRATOR_WORKERS=0 (every step then runs in its own fresh container)."""
    return os.environ.get("ORCHESTRATOR_WORKERS", "1").lower() not in ("0", "false", "no")


class PathMap:
    """Container paths of one step (its mounts' targets) <-> the same files in a worker (under /w/i)."""

    def __init__(self, pairs):
        self.forward = dict(pairs)  # step path -> worker path
        self.back = {w: s for s, w in self.forward.items()}

    @staticmethod
    def _rewrite(text, table):
        if not table:
            return text
        # a path only where it starts a path: not in the middle of another one, and not a prefix of a longer name
        alternation = "|".join(re.escape(p) for p in sorted(table, key=len, reverse=True))
        pattern = re.compile(rf"(?<![\w./-])({alternation})(?![\w.-])")
        return pattern.sub(lambda m: table[m.group(1)], text)

    def to_worker(self, text):
        return self._rewrite(text, self.forward)

    def to_step(self, text):
        return self._rewrite(text, self.back)


class Roots:
    """The host folders a session's workers see: (host path, read_only) in mount order."""

    def __init__(self, rw=(), ro=()):
        seen, self.items = set(), []
        for path, read_only in [(p, False) for p in rw] + [(p, True) for p in ro]:
            real = os.path.realpath(path)
            if real not in seen and os.path.exists(real):
                seen.add(real)
                self.items.append((real, read_only))

    def target(self, i):
        """Where root i appears in a worker: /w/i for a folder, /w/i/NAME for a file (a file keeps its name, which
        loaders read its format from)."""
        root = self.items[i][0]
        return f"{WORKER_ROOT}/{i}" if os.path.isdir(root) else f"{WORKER_ROOT}/{i}/{os.path.basename(root)}"

    def locate(self, source, read_only):
        """The worker path of host path `source`, or None when no root holds it (or holds it read-only and the
        mount must be writable)."""
        real = os.path.realpath(source)
        for i, (root, root_ro) in enumerate(self.items):
            if root_ro and not read_only:
                continue
            if real == root:
                return self.target(i)
            if real.startswith(root.rstrip("/") + "/") and os.path.isdir(root):
                return f"{self.target(i)}/{os.path.relpath(real, root)}"
        return None

    def scratch(self, name):
        """A new folder `.scratch-NAME` in the first writable folder root (None when there is none)."""
        for root, read_only in self.items:
            if not read_only and os.path.isdir(root):
                folder = Path(root) / f".scratch-{name}"
                folder.mkdir(exist_ok=True)
                return folder
        return None

    def covers(self, other):
        return all(self.locate(path, read_only) for path, read_only in other.items)

    def mounts(self):
        return [Mount(path, self.target(i), read_only=ro) for i, (path, ro) in enumerate(self.items)]


def step_map(spec, roots):
    """The PathMap of a step in a worker with `roots`, or None when one of its mounts lies outside them."""
    pairs = []
    for mount in spec.mounts:
        where = roots.locate(mount.source, mount.read_only)
        if where is None:
            return None
        pairs.append((mount.target, where))
    return PathMap(pairs)


def scaled_memory(memory, times):
    """A Docker memory size (`8g`, `512m`, bytes) times `times`, in the same unit; as given when it is not one."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([bkmg]?)b?\s*", str(memory).lower())
    if times == 1 or not match:
        return memory
    return f"{float(match.group(1)) * times:g}{match.group(2)}"


def worker_key(spec):
    """Steps whose specs agree on this run in the same worker: the same image and the same container settings."""
    return (spec.image, tuple(spec.worker), spec.user, spec.network, spec.memory, spec.read_only_root,
            tuple(sorted(spec.tmpfs.items())), tuple(spec.cap_drop), tuple(spec.security_opt),
            spec.pids_limit, spec.max_file_size, tuple(sorted(spec.environment.items())))


class Worker:
    """One running worker container and its control folder."""

    def __init__(self, engine, spec, roots, control_parent, slots=1):
        self.engine = engine
        self.stack = spec.name_hint
        self.control = Path(tempfile.mkdtemp(prefix="worker-", dir=control_parent))
        self.beat()
        self.dead = False  # its container is gone (or going): a step waiting on it fails as the container's would
        self.retiring = False  # it takes no new step, and goes once the ones it runs are over
        self.slots, self.inflight = int(slots), 1  # the step that started it
        # a step's working folder (its HOME and TMPDIR) is its own /scratch mount, on the disk of the conversion's
        # work folder (not the /tmp tmpfs, which counts against the memory limit); a step with none gets one under
        # the session's first writable root
        self.scratch, scratch_args = roots.scratch(self.control.name), []
        if self.scratch is not None:
            scratch_args = ["--scratch", roots.locate(str(self.scratch), False)]
        worker_spec = replace(
            spec, command=list(spec.worker) + ["--control", CONTROL, "--heartbeat", str(HEARTBEAT_TIMEOUT),
                                               *scratch_args],
            mounts=roots.mounts() + [Mount(str(self.control), CONTROL, read_only=False)],
            memory=scaled_memory(spec.memory, self.slots),
            name_hint=f"worker:{spec.image}", working_dir="/tmp", worker=None,
            labels={**spec.labels, "org.orchestrator.worker": spec.image},
        )
        self.spec = worker_spec
        self.container = None
        self._launched = threading.Event()  # set once engine.start has answered (container None: it failed)

    def launch(self):
        """Start its container (steps that took a slot meanwhile wait for it in wait_ready)."""
        try:
            self.container = self.engine.start(self.spec)
        finally:
            self._launched.set()

    def beat(self):
        (self.control / "alive").touch()

    def alive(self):
        state = self.engine.state(self.container)
        return state is not None and state["running"], state

    def wait_ready(self):
        deadline = time.monotonic() + READY_TIMEOUT
        if not self._launched.wait(READY_TIMEOUT) or self.container is None or self.dead:
            return False
        asked = 0.0  # the engine is asked now and then; the control folder, often (the import takes seconds)
        while not (self.control / "ready").exists():
            now = time.monotonic()
            if now - asked > STATE_EVERY:
                asked = now
                running, _ = self.alive()
                if not running or now > deadline:
                    return False
            time.sleep(POLL_SECONDS)
        return True

    def execute(self, spec, paths, log=None, watch=None):
        """Run one step's command in this worker; a RunResult as a fresh container's run would give (`watch` as
        for engine.run: its reason to stop the step kills that step and retires the worker)."""
        rid = uuid.uuid4().hex[:12]
        argv = [paths.to_worker(str(a)) for a in spec.command]
        request = self.control / f"{rid}.req"
        tmp = self.control / f"{rid}.req.tmp"
        req = {"argv": argv, "timeout": spec.timeout}
        if SCRATCH_DIR in paths.forward:  # the step's own working folder, as a fresh container would have it
            req["scratch"] = paths.forward[SCRATCH_DIR]
        tmp.write_text(json.dumps(req))
        tmp.rename(request)
        started = time.monotonic()
        done = self.control / f"{rid}.done"
        tails = {name: _Tail(self.control / f"{rid}.{name}", paths, log) for name in ("out", "err")}
        last_state = last_watch = started
        result, stopped = None, None  # stopped: (why, when) once `watch` asked for the step to end
        while result is None:
            if done.exists():
                result = json.loads(done.read_text())
                break
            for tail in tails.values():
                tail.pump()
            now = time.monotonic()
            if now - last_state > STATE_EVERY:
                last_state = now
                running, state = self.alive()
                if not running and not done.exists():  # the whole worker died: the memory limit, or the engine
                    self.dead = True
                    oom = bool((state or {}).get("oom_killed"))
                    code = 137 if oom else int((state or {}).get("exit_code") or 137)
                    result = {"exit_code": code, "timed_out": False, "seconds": now - started, "oom_killed": oom}
                    break
                if now - started > spec.timeout + GRACE_SECONDS or (stopped and now - stopped[1] > KILL_WAIT):
                    self.dead = True  # the server did not end it: the whole worker goes, and the step with it
                    result = ({"exit_code": 137, "timed_out": False, "seconds": now - started, "stopped": stopped[0]}
                              if stopped else {"exit_code": -1, "timed_out": True, "seconds": now - started})
                    break
            if watch and not stopped and now - last_watch > WATCH_EVERY:
                last_watch = now
                why = watch()
                if why:  # the step is killed alone; its neighbours in this worker go on
                    stopped = (why, now)
                    (self.control / f"{rid}.kill").touch()
            time.sleep(POLL_SECONDS)
        for tail in tails.values():
            tail.pump(final=True)
        if stopped:
            result = dict(result, exit_code=137, stopped=stopped[0])
        if result.get("timed_out") or result.get("signal") or result["exit_code"] < 0 or stopped:
            self.retiring = True  # a step killed mid-way takes its worker down with it, once its neighbours end
        for name in ("req", "taken", "done", "out", "err", "kill"):
            (self.control / f"{rid}.{name}").unlink(missing_ok=True)
        return RunResult(result["exit_code"] if not result.get("timed_out") else -1,
                         tails["out"].text(), tails["err"].text(), float(result.get("seconds", 0.0)),
                         bool(result.get("timed_out")), worker=True, oom_killed=bool(result.get("oom_killed")),
                         stopped=result.get("stopped"))

    def stop(self):
        self.dead = True
        try:
            if self.container is not None:
                self.engine.remove(self.container)
        except Exception:  # e.g. the engine went away: the worker's own heartbeat check ends it then
            pass
        finally:
            shutil.rmtree(self.control, ignore_errors=True)
            if self.scratch is not None:
                shutil.rmtree(self.scratch, ignore_errors=True)


class _Tail:
    """Follows a step's output file: complete lines go to `log` as they come (in the step's own paths)."""

    def __init__(self, path, paths, log):
        self.path, self.paths, self.log = path, paths, log
        self.data, self.sent = b"", 0

    def pump(self, final=False):
        try:
            with open(self.path, "rb") as fh:
                fh.seek(len(self.data))
                self.data += fh.read()
        except FileNotFoundError:
            return
        if not self.log:
            return
        end = len(self.data) if final else self.data.rfind(b"\n") + 1
        if end > self.sent:
            for line in self.data[self.sent:end].decode("utf-8", "replace").splitlines():
                self.log(self.paths.to_step(line))
            self.sent = end

    def text(self):
        return self.paths.to_step(self.data.decode("utf-8", "replace"))


class WorkerPool:
    """A ContainerEngine that runs steps in warm workers inside a session, and as the engine it wraps otherwise."""

    def __init__(self, engine, slots=SLOTS):
        if int(slots) < 1:
            raise ValueError(f"a worker runs at least one step at a time, not {slots}")
        self.inner, self.slots = engine, int(slots)
        self._lock = threading.Lock()

    def __getattr__(self, name):  # info, image, build, import_rootfs, save, load, start, state, remove
        return getattr(self.inner, name)

    def run(self, spec, log=None, watch=None):
        return self.inner.run(spec, log=log, watch=watch)

    def session(self, rw=(), ro=()):
        return Session(self, Roots(rw, ro))


class Session:
    """The workers of one conversion (or one batch); a context manager that removes them when it ends. Runs may go
    on in other threads (the verification's source run overlaps the conversion): closing the session stops them,
    and none starts after it."""

    stops_runs_on_close = True

    def __init__(self, pool, roots):
        self.pool, self.inner, self.roots = pool, pool.inner, roots
        self._lock = threading.Lock()
        self._live = {}  # worker_key -> [Worker] that take steps (each up to pool.slots at once)
        self._workers = []
        self._control = None
        self._broken = set()  # keys whose worker could not start: their steps run in fresh containers
        self._closed = threading.Event()
        self._heart = None

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def session(self, rw=(), ro=()):
        """A nested session: this one when its roots already hold everything, else a new one."""
        roots = Roots(rw, ro)
        if self.roots.covers(roots):
            return contextlib.nullcontext(self)
        return Session(self.pool, roots)

    def _beat(self):
        while not self._closed.wait(HEARTBEAT_EVERY):
            with self._lock:
                workers = list(self._workers)
            for worker in workers:
                if not worker.dead:
                    try:
                        worker.beat()
                    except OSError:
                        pass

    def close(self):
        self._closed.set()
        with self._lock:
            workers, self._workers, self._live = self._workers, [], {}
        for worker in workers:
            worker.stop()
        if self._control:
            shutil.rmtree(self._control, ignore_errors=True)

    def _checkout(self, spec):
        """A worker for the spec's stack with a free slot (its count of running steps taken), a new one when there
        is none, or None when it did not start (the spec's steps then run in fresh containers)."""
        key = worker_key(spec)
        with self._lock:
            live = self._live.setdefault(key, [])
            live[:] = [w for w in live if not (w.dead or w.retiring)]
            free = [w for w in live if w.inflight < w.slots]
            first = not free
            if free:
                worker = min(free, key=lambda w: w.inflight)
                worker.inflight += 1
            else:
                if self._control is None:
                    self._control = tempfile.mkdtemp(prefix="orchestrator-workers-")
                    self._heart = threading.Thread(target=self._beat, daemon=True, name="worker-heartbeat")
                    self._heart.start()
                # listed before it starts: a step of the same stack that comes meanwhile takes a slot, waits for it
                worker = Worker(self.inner, spec, self.roots, self._control, slots=self.pool.slots)
                self._workers.append(worker)
                live.append(worker)
        if first:
            try:
                worker.launch()
            except BaseException:
                worker.dead = True
                raise
            if self._closed.is_set():  # closed while it started: close() may have missed it
                worker.stop()
        return key, self._ready_or_broken(key, worker)

    def _ready_or_broken(self, key, worker):
        """The worker once it is ready; None when it never gets there (its stack then runs in fresh containers)."""
        if worker.wait_ready():
            return worker
        with self._lock:
            self._broken.add(key)
        worker.inflight -= 1
        worker.stop()
        return None

    def _checkin(self, key, worker):
        with self._lock:
            worker.inflight -= 1
            done = (worker.dead or worker.retiring) and worker.inflight == 0
            if done and worker in self._workers:
                self._workers.remove(worker)
        if worker.dead or done:
            worker.stop()  # a dead one at once (its container is gone); a retiring one once its last step ended

    def _open(self):
        if self._closed.is_set():
            raise EnvironmentProblem("the conversion ended while a run was starting")

    def run(self, spec, log=None, watch=None):
        self._open()
        paths = step_map(spec, self.roots) if spec.worker else None
        if paths is None or worker_key(spec) in self._broken:
            return self.inner.run(spec, log=log, watch=watch)
        key, worker = self._checkout(spec)
        self._open()  # closed while the worker started: Session.close removed it, or removes it now
        if worker is None:
            if log:
                log(f"[{spec.name_hint}] the warm worker of {spec.image} did not start; running in a fresh container")
            return self.inner.run(spec, log=log, watch=watch)
        try:
            for mount in spec.mounts:  # a fresh container's mount point exists even when the folder is empty
                if not mount.read_only:
                    Path(mount.source).mkdir(parents=True, exist_ok=True)
            return worker.execute(spec, paths, log=log, watch=watch)
        except OSError as exc:
            worker.dead = True
            raise EnvironmentProblem(f"the warm worker of {spec.image} failed: {exc}") from exc
        finally:
            self._checkin(key, worker)
