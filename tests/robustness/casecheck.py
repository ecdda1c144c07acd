"""Run one corpus case through the real CLI and check what the README promises for bad input: the documented exit
code, one line on stderr naming the file and the cause, no traceback, and nothing left behind (no OUTPUT_DIR, no
staging folder, no temporary file, no container, the input unchanged)."""

import hashlib
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

from clihelp import cli_env

SESSION_LABEL = "org.orchestrator.session"


def tree(root):
    """{relative path: (kind, mode, content hash or link target)} of everything under root, links not followed."""
    found = {}
    root = Path(root)
    if not os.path.lexists(root):
        return found
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            st = path.lstat()
            if path.is_symlink():
                what = ("link", os.readlink(path))
            elif path.is_dir():
                what = ("dir",)
            elif path.is_file():
                what = ("file", st.st_size, hashlib.sha256(path.read_bytes()).hexdigest())
            else:
                what = ("other",)
            found[str(path.relative_to(root))] = (*what, oct(st.st_mode))
    return found


def changes(before, after):
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    return [f"{what}: {', '.join(map(repr, names[:5]))}" for what, names in
            (("left behind", added), ("removed", removed), ("changed", changed)) if names]


def containers_of(session, wait=20.0):
    """The containers (steps and workers) still labelled with `session`, after giving removals `wait` seconds."""
    import docker

    client = docker.from_env()
    deadline = time.monotonic() + wait
    while True:
        left = client.containers.list(all=True, filters={"label": f"{SESSION_LABEL}={session}"})
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for c in left:  # do not leak them into the next case
        c.remove(force=True)
    return [f"{c.name} ({c.status})" for c in left]


def check(case, d, samples, cache_dir, record_property):
    record_property("robust_format", case.fmt)
    record_property("robust_case", case.id)
    d.mkdir(parents=True, exist_ok=True)
    (d / "tmp").mkdir()  # the CLI's TMPDIR: must stay empty
    run = case.build(d, samples)
    watched = [d, *run.watch]
    session = f"robust-{uuid.uuid4().hex[:12]}"
    env = cli_env(ORCHESTRATOR_SESSION=session, TMPDIR=str(d / "tmp"), ORCHESTRATOR_CACHE_DIR=str(cache_dir),
                  ORCHESTRATOR_NO_CACHE="1")
    argv = list(run.argv) + (["--quiet"] if case.container else [])
    try:
        before = [tree(w) for w in watched]
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "orchestrator", *argv], cwd=run.cwd or d, env=env,
                              capture_output=True, timeout=900)
        record_property("robust_seconds", round(time.monotonic() - started, 2))
        after = [tree(w) for w in watched]
    finally:
        if run.cleanup:
            run.cleanup()
    stderr = proc.stderr.decode("utf-8", "backslashreplace")
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    record_property("robust_exit", proc.returncode)
    record_property("robust_stderr", lines[-1] if lines else "")
    context = f"{case.id}: exit {proc.returncode}, stderr:\n{stderr[-3000:]}"
    assert proc.returncode == run.code, context
    assert "Traceback" not in stderr, context
    assert len(lines) == 1, context
    line = lines[0]
    assert line.startswith("orchestrator: error: "), context
    assert any(name in line for name in run.names), f"{case.id}: names none of {run.names}: {line}"
    assert re.search(run.cause, line), f"{case.id}: cause /{run.cause}/ not said: {line}"
    assert not proc.stdout.strip(), f"{case.id}: stdout: {proc.stdout[-500:]!r}"
    for folder, old, new in zip(watched, before, after):
        assert not changes(old, new), f"{case.id}: in {folder}: {'; '.join(changes(old, new))}"
    left = containers_of(session)
    assert not left, f"{case.id}: containers left: {', '.join(left)}"


def tests_of(*formats):
    """The corpus's test for the cases of `formats` (each test_robust_*.py holds one, so xdist spreads them)."""
    import pytest

    import corpus

    @pytest.mark.e2e
    @pytest.mark.parametrize("case", corpus.cases_of(*formats), ids=lambda c: c.id)
    def test_bad_input(case, samples, tmp_path, cache_dir, record_property):
        check(case, tmp_path / "case", samples, cache_dir, record_property)

    return test_bad_input
