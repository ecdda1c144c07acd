"""Helpers for the end-to-end tests: run the real CLI as a user would."""

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path


CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REPO = Path(__file__).resolve().parents[2]


def engine_or_skip():
    """The Docker engine the tests use; without one, skip (under CI=true: fail, never skip)."""
    import pytest

    from orchestrator.engine import Engine
    from orchestrator.errors import EnvironmentProblem

    eng = Engine()
    try:
        eng.info()
    except EnvironmentProblem as exc:
        if CI:
            pytest.fail(f"CI=true but {exc}")
        pytest.skip(str(exc))
    return eng


def cli_env(**extra):
    """The environment the CLI runs in: this checkout's orchestrator first, whatever the working folder."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


REPORT_ON = {"ORCHESTRATOR_NO_REPORT": ""}  # cli_env(**REPORT_ON): conversions write report.html


def cli(*args, timeout=1800, **kw):
    """Run the orchestrator CLI as a user would; return the CompletedProcess (text)."""
    return subprocess.run([sys.executable, "-m", "orchestrator", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=kw.pop("cwd", None), env=kw.pop("env", None) or cli_env(), **kw)


@contextlib.contextmanager
def worker_starts(session_id):
    """The images of the warm workers started with ORCHESTRATOR_SESSION=session_id while the block ran (the list
    is filled in as it ends): other tests run beside this one, so only that session's are counted."""
    events = subprocess.Popen(["docker", "events", "--format", "{{json .}}", "--filter", "type=container",
                               "--filter", "event=start", "--filter", "label=org.orchestrator.worker",
                               "--filter", f"label=org.orchestrator.session={session_id}"],
                              stdout=subprocess.PIPE, text=True)
    started = []
    try:
        time.sleep(0.5)
        yield started
    finally:
        time.sleep(1)
        events.terminate()
        started.extend(json.loads(line)["Actor"]["Attributes"]["org.orchestrator.worker"]
                       for line in events.communicate()[0].splitlines() if line.strip())


def shared_root(factory):
    """A folder every xdist worker of this run sees (the parent of the workers' own tmp folders)."""
    base = factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


SAMPLE_CACHE = None  # the run's folder of samples, shared by its xdist workers (set by the conftests: use_sample_cache)


def use_sample_cache(factory):
    global SAMPLE_CACHE
    SAMPLE_CACHE = shared_root(factory) / "sample-cache"
    SAMPLE_CACHE.mkdir(parents=True, exist_ok=True)
    return SAMPLE_CACHE


def cached_sample(fmt, kind, root=None):
    """The folder of `orchestrator sample FMT --kind KIND`, made through the CLI once per test run (in `root`,
    default the run's SAMPLE_CACHE), by whichever worker asks first (the others wait on its lock). Read it; copy
    before changing anything (make_samples)."""
    import fcntl

    if (root or SAMPLE_CACHE) is None:
        raise RuntimeError("no sample cache: a conftest calls use_sample_cache(tmp_path_factory)")
    root = Path(root or SAMPLE_CACHE)
    folder = root / f"{fmt}-{kind}"
    with open(root / f".{fmt}-{kind}.making", "w") as lock:  # not `.NAME.lock`: that is the output's own lock
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not folder.exists():  # `sample` commits its folder whole, or writes nothing
            proc = cli("sample", fmt, folder, "--kind", kind, timeout=1200)
            assert proc.returncode == 0, f"sample {fmt} --kind {kind}: {proc.stderr[-2000:]}"
    return folder


def make_samples(root, fmt, kinds):
    """{kind: folder} of `orchestrator sample FMT` models, one per kind: a copy of the run's cached sample (made
    through the CLI, in its stack, once per run), that the test may change."""
    import shutil

    made = {}
    for kind in kinds:
        made[kind] = Path(root) / kind
        shutil.copytree(cached_sample(fmt, kind), made[kind], symlinks=True)
    return made


def last_line(proc):
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def manifest(out):
    return json.loads((Path(out) / "manifest.json").read_text())




def recorded_error_matches(out, v):
    """The manifest's max_abs_err of every output is what the kept arrays give over the judged samples."""
    import numpy as np

    ref = np.load(Path(out) / "verification" / "source_outputs.npz")
    got = np.load(Path(out) / "verification" / "result_outputs.npz")
    rows = [i for d in v["inputs"]["distributions"] if d["judged"] for i in range(d["start"], d["start"] + d["count"])]
    for o in v["outputs"]:
        err = np.max(np.abs(ref[o["name"]][rows].astype(np.float64) - got[o["result_name"]][rows].astype(np.float64)))
        if abs(err - o["max_abs_err"]) > 1e-6 * abs(err) + 1e-12:
            return False
    return True


def assert_hardened(container, memory):
    """The runner's settings, read off a live container (docker-py's Container): no network, a read-only root with
    only a small /tmp tmpfs, every capability dropped, no-new-privileges, the host user, the memory,
    pids and largest-file limits, and no Docker socket among its mounts."""
    host, config = container.attrs["HostConfig"], container.attrs["Config"]
    assert host["NetworkMode"] == "none" and host["ReadonlyRootfs"] and host["CapDrop"] == ["ALL"]
    assert "no-new-privileges" in host["SecurityOpt"] and host["Memory"] == memory and not host["Privileged"]
    assert host["PidsLimit"] == 4096 and host["Tmpfs"] == {"/tmp": "rw,exec,size=512m"}
    assert [u["Name"] for u in host["Ulimits"] or []] == ["fsize"]
    assert config["User"] == f"{os.getuid()}:{os.getgid()}"
    assert not any("docker.sock" in m["Source"] or m["Destination"].startswith("/var/run")
                   for m in container.attrs["Mounts"])
