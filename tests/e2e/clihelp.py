"""Helpers for the end-to-end tests: run the real CLI as a user would."""

import json
import os
import subprocess
import sys
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


def make_samples(root, fmt, kinds):
    """{kind: folder} of `orchestrator sample FMT` models, one per kind (made through the CLI, in their stacks)."""
    made = {}
    for kind in kinds:
        proc = cli("sample", fmt, Path(root) / kind, "--kind", kind)
        assert proc.returncode == 0, proc.stderr[-2000:]
        made[kind] = Path(root) / kind
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
