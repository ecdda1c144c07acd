"""Faults mid-run, through the real CLI: SIGINT and SIGTERM in the step and in the verification, a full output
file system, an unreachable engine, two conversions into one OUTPUT_DIR at once. Each leaves OUTPUT_DIR as it was
(or absent), no container and no staging folder, and says what happened in one line with the documented exit code.
(A step killed for memory or past --timeout: test_e2e_runner.py; an interrupt during the commit: the unit test
test_staging.py, since no signal can be timed into a rename from outside.)"""

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from clihelp import CI, cli, manifest

pytestmark = pytest.mark.e2e


def session_containers(engine, session):
    return engine.client.containers.list(all=True, filters={"label": f"org.orchestrator.session={session}"})


def leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("phase", ["step", "verify"])
def test_a_signal_in_a_phase_removes_everything_it_made(engine, keras_mobilenet, tmp_path, sig, phase):
    session = uuid.uuid4().hex
    env = dict(os.environ, ORCHESTRATOR_SESSION=session, PYTHONUNBUFFERED="1")
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("the output of an earlier conversion")
    p = subprocess.Popen([sys.executable, "-m", "orchestrator", "convert", "keras", str(keras_mobilenet), str(out),
                          "--force"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    marker = {"step": "step ", "verify": "verify: "}[phase]
    seen = []
    for line in p.stderr:  # the plain progress lines (stderr, not a terminal): "step 1/1: ...", "verify: ..."
        seen.append(line)
        if line.startswith(marker):
            break
    assert p.poll() is None, "".join(seen) + p.stderr.read()
    time.sleep(1.0)  # inside the phase: MobileNetV2's step and source run take seconds
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    print(f"{phase}/{signal.Signals(sig).name}: exit {p.returncode}: {err.strip().splitlines()[-1]}")
    said = {signal.SIGINT: "orchestrator: interrupted", signal.SIGTERM: "orchestrator: terminated by SIGTERM"}[sig]
    assert p.returncode == {signal.SIGINT: 130, signal.SIGTERM: 143}[sig], err[-2000:]
    assert err.strip().splitlines()[-1] == said
    assert "Traceback" not in err
    assert session_containers(engine, session) == []
    assert leftovers(tmp_path) == ["out"] and leftovers(out) == ["old.txt"]  # as it was


@pytest.fixture
def small_fs(tmp_path):
    """A 16 KiB tmpfs: the step's output does not fit."""
    where = tmp_path / "small"
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k,mode=0777", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        if CI:
            pytest.fail(f"CI=true but cannot mount a small tmpfs: {done.stderr.strip()}")
        pytest.skip(f"cannot mount a small tmpfs (root needed): {done.stderr.strip()}")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_full_output_file_system_fails_cleanly(engine, samples, small_fs):
    session = uuid.uuid4().hex
    env = dict(os.environ, ORCHESTRATOR_SESSION=session)
    proc = cli("convert", "keras", samples[("keras", "cnn")] / "model.h5", small_fs / "out", "--quiet", env=env)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    print(f"disk full: exit {proc.returncode}: {lines[-1] if lines else ''}")
    assert proc.returncode == 3 and len(lines) == 1, proc.stderr[-3000:]
    assert "No space left on device" in lines[0] and "Traceback" not in proc.stderr
    assert leftovers(small_fs) == [] and session_containers(engine, session) == []


def test_an_unreachable_engine_is_one_line_and_exit_5(samples, tmp_path):
    env = dict(os.environ, DOCKER_HOST=f"unix://{tmp_path}/no-engine.sock")
    proc = cli("convert", "keras", samples[("keras", "cnn")] / "model.h5", tmp_path / "out", env=env)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    print(f"no engine: exit {proc.returncode}: {lines[-1] if lines else ''}")
    assert proc.returncode == 5 and len(lines) == 1, proc.stderr[-2000:]
    assert "Docker engine" in lines[0] and "Traceback" not in proc.stderr
    assert leftovers(tmp_path) == []


def test_two_conversions_into_one_output_dir_one_is_refused_the_other_whole(engine, samples, tmp_path):
    model = samples[("keras", "cnn")] / "model.h5"
    out = tmp_path / "out"
    procs = [subprocess.Popen([sys.executable, "-m", "orchestrator", "convert", "keras", str(model), str(out)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2).strip().splitlines()[-1]
    print(f"two at once: {refused}")
    assert (f"{out}: another conversion is writing it (pid " in refused
            or f"{out}: exists and is not empty" in refused), refused
    assert manifest(out)["verification"]["passed"] is True
    assert (out / "model.tflite").is_file() and leftovers(tmp_path) == ["out"]
