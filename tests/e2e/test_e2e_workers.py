"""Warm workers on the real engine (orchestrator/workers.py, images/shared/step_server.py): one container per stack
per conversion, with the same hardening as a step's own container, checked on the live worker; a step past its
timeout or killed for memory takes its worker down and reports as a fresh container's would; no worker outlives its
session, nor a host that was killed."""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from clihelp import REPORT_ON, assert_hardened, cli, cli_env, manifest, worker_starts
from orchestrator import images, protocol, workers
from orchestrator.runner import StackImage, StepRun, container_spec, scratch_dir

pytestmark = pytest.mark.e2e

PROBE = textwrap.dedent("""
    import json, os, socket, sys
    facts = {"uid": os.getuid(), "argv": sys.argv[1:], "cwd": os.getcwd()}
    try:
        open("/etc/probe", "w")
        facts["root_writable"] = True
    except OSError:
        facts["root_writable"] = False
    try:
        socket.create_connection(("10.0.0.1", 80), timeout=2)
        facts["network"] = True
    except OSError as exc:
        facts["network"] = False
    facts["cap_eff"] = [l.split()[1] for l in open("/proc/self/status") if l.startswith("CapEff")][0]
    facts["tensorflow_preloaded"] = "tensorflow" in sys.modules
    import tempfile
    facts["tmp"] = tempfile.gettempdir()
    facts["tmp_fs"] = [l.split()[2] for l in open("/proc/self/mounts")
                       if facts["tmp"].startswith(l.split()[1].rstrip("/") + "/")
                       or facts["tmp"] == l.split()[1]][-1]
    out = sys.argv[sys.argv.index("--out") + 1]
    json.dump(facts, open(os.path.join(out, "facts.json"), "w"))
    print("probe wrote", os.path.join(out, "facts.json"))
    mode = sys.argv[sys.argv.index("--mode") + 1]
    if mode == "sleep":
        import time; time.sleep(120)
    if mode == "hog":
        hog = [bytearray(64 << 20) for _ in range(64)]
    if mode == "child-hog":  # a converter run in a process of its own, as the onnx2tf attempts are
        from common import run_child
        run_child([sys.executable, "-c", "hog = [bytearray(64 << 20) for _ in range(64)]"], "the probe's child")
    if mode == "scratch-write":  # 1.5 GB of scratch files under a 1g limit: fine on disk, fatal on the tmpfs
        with tempfile.NamedTemporaryFile() as fh:
            for _ in range(96):
                fh.write(b"x" * (16 << 20))
                fh.flush()
                os.fsync(fh.fileno())
        print("scratch written")
""")


def session_containers(session_id, engine):
    found = engine.client.containers.list(all=True, filters={"label": f"org.orchestrator.session={session_id}"})
    return [c for c in found if "org.orchestrator.worker" in c.labels]


def probe_run(tmp_path, mode, name):
    stack = images.get_stack("tf2")
    image = StackImage.of(stack, stack.tag(), "")
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    (code / "probe.py").write_text(PROBE)
    return StepRun(name, image, "probe.py", ["--mode", mode], {str(code): protocol.MODEL_DIR},
                   tmp_path / "work" / name)


def spec_of(run, **kw):
    run.out_dir.mkdir(parents=True)
    scratch_dir(run).mkdir()
    spec = container_spec(run, **kw)
    # the probe lives in the mounted folder, not in the image's steps
    spec.command = [spec.command[0], f"{protocol.MODEL_DIR}/probe.py", *spec.command[2:]]
    return spec


def test_a_worker_keeps_the_step_hardening_and_runs_its_steps_forked_after_the_imports(engine, stack_images,
                                                                                     tmp_path, monkeypatch):
    (tmp_path / "code").mkdir()
    session_id = f"workers-{os.getpid()}-{time.monotonic_ns()}"
    monkeypatch.setenv("ORCHESTRATOR_SESSION", session_id)
    (tmp_path / "work").mkdir()
    with workers.WorkerPool(engine).session(rw=[tmp_path / "work"], ro=[tmp_path / "code"]) as session:
        results = []
        for i in range(2):
            run = probe_run(tmp_path, "ok", f"probe{i}")
            results.append((run, session.run(spec_of(run, memory="2g"))))
        live = session_containers(session_id, engine)
        assert len(live) == 1  # both steps ran in one worker
        assert_hardened(live[0], memory=workers.SLOTS * (2 << 30))  # the steps' 2g for each step it runs at once
        mounts = {m["Destination"]: m for m in live[0].attrs["Mounts"]}
        assert mounts["/w/1"]["RW"] is False and mounts["/w/0"]["RW"] is True
    assert session_containers(session_id, engine) == []
    for run, result in results:
        assert result.exit_code == 0 and result.worker, result.stderr
        facts = json.loads((run.out_dir / "facts.json").read_text())
        assert facts["uid"] == os.getuid() and not facts["root_writable"] and not facts["network"]
        assert int(facts["cap_eff"], 16) == 0 and facts["tensorflow_preloaded"]
        assert facts["argv"][-2:] == ["--out", "/w/0/" + run.name]
        # its scratch (cwd, HOME, TMPDIR) lies in the work folder on disk, not in the memory-counted tmpfs
        assert facts["tmp"] == f"/w/0/{run.name}.scratch" and facts["cwd"] == facts["tmp"]  # as a fresh container's
        assert facts["tmp_fs"] != "tmpfs"
        # what the step printed comes back in its own container paths
        assert result.stdout.strip() == "probe wrote /out/facts.json"


def test_a_step_past_its_timeout_or_over_memory_takes_its_worker_down(engine, stack_images, tmp_path, monkeypatch):
    (tmp_path / "code").mkdir()
    session_id = f"workers-{os.getpid()}-{time.monotonic_ns()}"
    monkeypatch.setenv("ORCHESTRATOR_SESSION", session_id)
    (tmp_path / "work").mkdir()
    with workers.WorkerPool(engine).session(rw=[tmp_path / "work"], ro=[tmp_path / "code"]) as session:
        started = time.monotonic()
        slow = session.run(spec_of(probe_run(tmp_path, "sleep", "slow"), timeout=20))
        assert slow.timed_out and time.monotonic() - started < 90
        assert session_containers(session_id, engine) == []  # gone with its step
        hog = session.run(spec_of(probe_run(tmp_path, "hog", "hog"), memory="1g"))
        assert hog.exit_code == 137 and not hog.timed_out
        assert session_containers(session_id, engine) == []
        ok = session.run(spec_of(probe_run(tmp_path, "ok", "after"), memory="2g"))
        assert ok.exit_code == 0 and ok.worker  # a new worker serves the next step


def test_a_killed_host_leaves_no_worker_behind(engine, stack_images, tmp_path):
    """The host stops its heartbeat (killed with SIGKILL, so nothing cleans up): the worker exits on its own."""
    session_id = f"workers-killed-{os.getpid()}-{time.monotonic_ns()}"
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "probe.py").write_text(PROBE)
    script = textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        os.environ["ORCHESTRATOR_SESSION"] = {session_id!r}
        from pathlib import Path
        from orchestrator import workers
        from orchestrator.engine import Engine
        workers.HEARTBEAT_TIMEOUT = 8
        import test_e2e_workers as t
        tmp = Path({str(tmp_path)!r})
        (tmp / "work").mkdir()
        with workers.WorkerPool(Engine()).session(rw=[tmp / "work"], ro=[tmp / "code"]) as session:
            result = session.run(t.spec_of(t.probe_run(tmp, "ok", "first")))
            print("ran", result.exit_code, flush=True)
            time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ran 0"
    assert len(session_containers(session_id, engine)) == 1
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 90
    while session_containers(session_id, engine) and time.monotonic() < deadline:
        time.sleep(1)
    assert session_containers(session_id, engine) == []  # it stopped by itself, and the engine removed it


def test_a_conversion_starts_its_workers_once_and_records_them(samples, tmp_path):
    session_id = f"workers-count-{os.getpid()}-{time.monotonic_ns()}"
    with worker_starts(session_id) as started:
        proc = cli("convert", "keras", samples[("keras", "cnn")] / "model.h5", tmp_path / "out",
                   env=cli_env(ORCHESTRATOR_SESSION=session_id, **REPORT_ON))
        assert proc.returncode == 0, proc.stderr[-2000:]
    m = manifest(tmp_path / "out")
    runs = m["steps"] + m["verification"]["steps"]
    assert all(r["worker"] for r in runs) and len(runs) == 4
    # keras -> tflite and its verification all run in tf2, in one worker: the source run (it needs nothing the
    # conversion makes) beside the conversion in a second slot; the result run and the compare after them. The
    # report's picture: a bare worker of the Graphviz stack (tf1), which imports nothing ahead
    assert sorted(image.split(":")[0] for image in started) == ["orchestrator/tf1", "orchestrator/tf2"], started


@pytest.mark.parametrize("in_worker", [True, False], ids=["warm-worker", "fresh-container"])
def test_scratch_is_on_disk_and_a_child_killed_for_memory_is_said_to_be(engine, stack_images, tmp_path, monkeypatch,
                                                                        in_worker):
    """The issue's ZFNet case in small: a converter's own process killed by the memory limit stops the step at once
    (no remedy after it), and the host names the limit and its flag, not a log line. Scratch files do not count
    against the limit: they are on disk."""
    from orchestrator.errors import StepFailed
    from orchestrator.runner import killed_reason

    (tmp_path / "code").mkdir()
    (tmp_path / "work").mkdir()
    monkeypatch.setenv("ORCHESTRATOR_SESSION", f"workers-{os.getpid()}-{time.monotonic_ns()}")
    pool = workers.WorkerPool(engine, slots=1) if in_worker else engine  # the limit is the step's own
    with pool.session(rw=[tmp_path / "work"], ro=[tmp_path / "code"]) as session:
        wrote = session.run(spec_of(probe_run(tmp_path, "scratch-write", "scratch"), memory="1g"))
        assert wrote.exit_code == 0 and "scratch written" in wrote.stdout, wrote.stderr[-2000:]
        assert wrote.worker == in_worker
        # 2g: the child (4 GB wanted) outgrows the worker's preloaded TensorFlow, so it is the one the kernel picks
        hog = session.run(spec_of(probe_run(tmp_path, "child-hog", "childhog"), memory="2g"))
    assert hog.exit_code == 137 and not hog.timed_out
    last = [ln for ln in hog.stderr.splitlines() if ln.strip()][-1]
    assert last == "ERROR: the probe's child was killed by the kernel's out-of-memory killer (the container's memory limit)"
    line = str(StepFailed("probe", "img", 137, hog.stderr, reason=killed_reason(137, "2g", hog.stderr,
                                                                                 hog.oom_killed)))
    assert "(killed by SIGKILL at the memory limit of 2g; raise it with --memory): the probe's child was killed" in line
