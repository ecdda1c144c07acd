"""The runner's guarantees on a real engine: no network, limits, timeouts, cleanup on Ctrl-C."""

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from clihelp import assert_hardened, cli, last_line
from orchestrator import images
from orchestrator.engine import ContainerSpec

pytestmark = pytest.mark.e2e


def step_containers(engine, session):
    return engine.client.containers.list(all=True, filters={"label": f"org.orchestrator.session={session}"})


def session_env():
    session = uuid.uuid4().hex
    return session, dict(os.environ, ORCHESTRATOR_SESSION=session)


def tf2_tag():
    return images.get_stack("tf2").tag()


def test_step_container_has_no_network_and_runs_as_host_user(engine, stack_images):
    session = uuid.uuid4().hex
    spec = ContainerSpec(image=tf2_tag(), command=["python", "-c",
                         "import socket, os; print(sorted(n for _, n in socket.if_nameindex()), os.getuid())"],
                         user=f"{os.getuid()}:{os.getgid()}", labels={"org.orchestrator.session": session})
    result = engine.run(spec)
    assert result.exit_code == 0
    assert result.stdout.strip() == f"['lo'] {os.getuid()}"
    assert step_containers(engine, session) == []


def test_a_step_container_carries_every_runner_setting(engine, stack_images, tmp_path):
    """A fresh step container as the runner specifies it, inspected live (a worker's: test_e2e_workers.py)."""
    from orchestrator import runner

    session = uuid.uuid4().hex
    stack = images.get_stack("tf2")
    run = runner.StepRun("probe", runner.StackImage.of(stack, stack.tag(), ""), "probe.py", out_dir=tmp_path / "out")
    run.out_dir.mkdir()
    runner.scratch_dir(run).mkdir()
    spec = runner.container_spec(run, memory="3g")
    spec.command, spec.labels = ["sleep", "60"], dict(spec.labels, **{"org.orchestrator.session": session})
    container = engine.start(spec)
    try:
        assert_hardened(engine.client.containers.get(container), memory=3 << 30)
        mounts = {m["Destination"]: m["RW"] for m in engine.client.containers.get(container).attrs["Mounts"]}
        assert mounts == {"/out": True, "/scratch": True}
    finally:
        engine.remove(container)
    assert step_containers(engine, session) == []


# a warm worker has TensorFlow imported already, so a small model's step can finish inside any short timeout: the
# step here is MobileNetV2's conversion, which takes seconds on any machine, in a worker and in a fresh container
@pytest.mark.parametrize("workers", ["1", "0"], ids=["warm-worker", "fresh-container"])
def test_timeout_kills_and_removes_the_container(keras_mobilenet, engine, tmp_path, workers):
    session, env = session_env()
    env["ORCHESTRATOR_WORKERS"] = workers
    proc = cli("convert", "keras", keras_mobilenet, tmp_path / "out", "--timeout", "1", env=env)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "timed out after 1 s" in last_line(proc)
    assert step_containers(engine, session) == [] and list(tmp_path.iterdir()) == []


def test_memory_limit(samples, engine, tmp_path):
    session, env = session_env()
    proc = cli("convert", "keras", samples[("keras", "cnn")] / "model.h5", tmp_path / "out", "--memory", "48m",
               env=env)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "memory limit of 48m" in last_line(proc)
    assert step_containers(engine, session) == [] and list(tmp_path.iterdir()) == []


def test_ctrl_c_removes_the_container_and_the_partial_output(samples, engine, tmp_path):
    session, env = session_env()
    # a shell without job control starts background jobs with SIGINT ignored, and the child would inherit that:
    # give the CLI the default disposition, as a terminal's Ctrl-C finds it
    p = subprocess.Popen([sys.executable, "-m", "orchestrator", "convert", "keras",
                          str(samples[("keras", "cnn")] / "model.h5"), str(tmp_path / "out")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def running():
        return [c for c in step_containers(engine, session) if c.status == "running"]

    deadline = time.time() + 60
    while time.time() < deadline and not running():
        time.sleep(0.2)
    assert running(), "the step container never started"
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130 and "interrupted" in err
    assert step_containers(engine, session) == []
    assert list(tmp_path.iterdir()) == []
