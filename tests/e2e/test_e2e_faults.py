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
    # inside the phase: MobileNetV2's step takes seconds; the verification's source run went alongside it, and its
    # result run takes about one
    time.sleep({"step": 1.0, "verify": 0.2}[phase])
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


class EngineProxy:
    """A stand-in for the engine's socket that forwards to the real one, and that the test can stop: to the
    orchestrator the engine then went away mid-run, as when dockerd stops (while the containers it made live on,
    as they do when dockerd comes back)."""

    def __init__(self, path, target="/var/run/docker.sock"):
        import socket
        import threading

        self.path, self.target, self.conns = str(path), target, []
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import socket
        import threading

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self.target)
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(a, b):
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(2)
                except OSError:
                    pass

    def stop(self):
        self.listener.close()
        os.unlink(self.path)
        for s in self.conns:
            try:
                s.shutdown(2)
                s.close()
            except OSError:
                pass


def wait_for(what, seconds=300, every=0.2):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"waited {seconds} s in vain")


@pytest.mark.parametrize("workers", ["1", "0"], ids=["warm-worker", "fresh-container"])
def test_the_engine_going_away_mid_step_is_one_line_and_its_containers_are_reaped_later(
        engine, keras_mobilenet, samples, tmp_path, workers):
    session = uuid.uuid4().hex
    proxy = EngineProxy(tmp_path / "engine.sock")
    env = dict(os.environ, ORCHESTRATOR_SESSION=session, DOCKER_HOST=f"unix://{proxy.path}",
               ORCHESTRATOR_WORKERS=workers)
    out = tmp_path / "out"
    p = subprocess.Popen([sys.executable, "-m", "orchestrator", "convert", "keras", str(keras_mobilenet), str(out),
                          "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_for(lambda: [c for c in session_containers(engine, session) if c.status == "running"])
        time.sleep(1.0)
        assert p.poll() is None, p.stderr.read()
    finally:
        proxy.stop()  # the engine is gone, as far as the orchestrator can tell
    _, err = p.communicate(timeout=120)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    print(f"engine gone ({workers=}): exit {p.returncode}: {lines[-1] if lines else ''}")
    assert p.returncode == 5 and len(lines) == 1, err[-2000:]
    assert "lost the connection to the Docker engine while" in lines[0] and "Traceback" not in err
    assert leftovers(tmp_path) == []  # no output, no staging, no lock (the proxy's socket is gone too)
    # its containers outlived it (dockerd would keep them, stopped): the next conversion on this host removes them
    assert session_containers(engine, session)
    proc = cli("convert", "keras", samples[("keras", "cnn")] / "model.h5", tmp_path / "next", "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert session_containers(engine, session) == []


def test_an_image_removed_after_the_plan_is_said_and_nothing_is_left(engine, keras_mobilenet, tmp_path):
    """keras -> tfjs_layers_model runs its step in tf2 and the result's run in tfjs. The images are the real ones
    under the tags of a copy of images/ (each stack folder holds one more file), so removing those tags mid-run
    leaves the suite's own images alone."""
    import shutil

    from orchestrator import images

    copy = tmp_path / "images"
    shutil.copytree(images.images_dir(), copy, ignore=shutil.ignore_patterns("__pycache__", "_build"))
    tags = []
    stacks = images.discover_stacks()
    for stack in stacks.values():  # every folder first: an alias's folder (litert_torch) is part of its image's tag
        (copy / stack.path.name / "NOTE.txt").write_text("a copy for test_e2e_faults.py\n")
    for stack in images.images_of(stacks.values()):  # then each image once
        ours = images.get_stack(stack.name, root=copy).tag()
        assert ours != stack.tag()
        engine.client.images.get(stack.tag()).tag(*ours.split(":"))
        tags.append(ours)
    session = uuid.uuid4().hex
    env = dict(os.environ, ORCHESTRATOR_SESSION=session, ORCHESTRATOR_IMAGES_DIR=str(copy))
    out = tmp_path / "out"
    p = subprocess.Popen([sys.executable, "-m", "orchestrator", "convert", "keras", str(keras_mobilenet), str(out),
                          "--to", "tfjs_layers_model", "--no-build", "--quiet"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_for(lambda: session_containers(engine, session))  # the plan is made, its images found: a step runs
    finally:
        for tag in tags:
            engine.client.images.remove(tag)  # an untag: the suite's images keep their own tags
    _, err = p.communicate(timeout=600)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    print(f"image removed: exit {p.returncode}: {lines[-1] if lines else ''}")
    assert p.returncode == 5 and len(lines) == 1, err[-2000:]
    assert "is no longer in the engine" in lines[0] and "orchestrator images build" in lines[0], lines[0]
    assert "Traceback" not in err
    assert session_containers(engine, session) == []
    assert leftovers(tmp_path) == ["images"]
