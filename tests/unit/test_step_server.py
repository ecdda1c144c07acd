"""The warm worker's server (images/shared/step_server.py) run as a local process: the protocol the host relies on
(orchestrator/workers.py), with no container and no Docker."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

SERVER = Path(__file__).resolve().parents[2] / "images" / "shared" / "step_server.py"


@pytest.fixture
def server(tmp_path):
    control, scratch = tmp_path / "ctl", tmp_path / "scratch"
    control.mkdir()
    scratch.mkdir()
    (control / "alive").touch()
    proc = subprocess.Popen([sys.executable, str(SERVER), "--control", str(control), "--preload", "json,no_such_mod",
                             "--scratch", str(scratch), "--heartbeat", "5"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not (control / "ready").exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    yield proc, control, scratch
    proc.kill()
    proc.wait()


def run(control, argv, timeout=30.0, rid="r1", **more):
    (control / f"{rid}.req.tmp").write_text(json.dumps({"argv": argv, "timeout": timeout, **more}))
    (control / f"{rid}.req.tmp").rename(control / f"{rid}.req")
    deadline = time.monotonic() + 60
    while not (control / f"{rid}.done").exists():
        assert time.monotonic() < deadline
        (control / "alive").touch()
        time.sleep(0.02)
    done = json.loads((control / f"{rid}.done").read_text())
    return done, (control / f"{rid}.out").read_text(), (control / f"{rid}.err").read_text()


def script(tmp_path, text, name="step.py"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_a_step_runs_as_main_with_its_argv_its_own_folder_and_both_streams(server, tmp_path):
    _, control, scratch = server
    step = script(tmp_path, "import os, sys, tempfile\nprint('args', sys.argv[1:], __name__)\n"
                            "print('cwd', os.getcwd() == os.environ['HOME'] == tempfile.gettempdir())\n"
                            "open('scratch.txt', 'w').write('x')\n"
                            "print('to-stderr', file=sys.stderr)\nsys.exit(3)\n")
    done, out, err = run(control, ["python", step, "--out", "/x"])
    assert done["exit_code"] == 3 and not done["timed_out"] and done["signal"] == 0
    assert "args ['--out', '/x'] __main__" in out and "cwd True" in out
    assert err.strip() == "to-stderr"
    assert list(scratch.iterdir()) == []  # its working folder went with it


def test_a_step_given_its_working_folder_works_there_and_leaves_it_to_the_host(server, tmp_path):
    _, control, scratch = server
    own = tmp_path / "own-scratch"
    own.mkdir()
    step = script(tmp_path, "import os, tempfile\nprint(os.getcwd(), os.environ['HOME'], tempfile.gettempdir())\n"
                            "open('scratch.txt', 'w').write('x')\n")
    done, out, _ = run(control, ["python", step], scratch=str(own))
    assert done["exit_code"] == 0 and out.split() == [str(own)] * 3
    assert (own / "scratch.txt").read_text() == "x" and list(scratch.iterdir()) == []


def test_an_uncaught_exception_prints_its_traceback_and_exits_1(server, tmp_path):
    _, control, _ = server
    done, _, err = run(control, ["python", script(tmp_path, "raise ValueError('broken model')\n")])
    assert done["exit_code"] == 1 and "ValueError: broken model" in err and "Traceback" in err


def test_a_step_past_its_timeout_is_killed_with_its_children(server, tmp_path):
    _, control, _ = server
    marker = tmp_path / "child.pid"
    step = script(tmp_path, f"import subprocess, time\np = subprocess.Popen(['sleep', '60'])\n"
                            f"open({str(marker)!r}, 'w').write(str(p.pid))\ntime.sleep(60)\n")
    started = time.monotonic()
    done, _, _ = run(control, ["python", step], timeout=1.0)
    assert done["timed_out"] and done["exit_code"] == 137 and time.monotonic() - started < 20
    pid = int(marker.read_text())
    time.sleep(0.2)
    gone = not os.path.exists(f"/proc/{pid}") or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    assert gone  # the step's own subprocess went with it


def test_a_step_killed_by_a_signal_reports_128_plus_the_signal(server, tmp_path):
    _, control, _ = server
    done, _, _ = run(control, ["python", script(tmp_path, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")])
    assert done["exit_code"] == 137 and done["signal"] == 9 and not done["timed_out"]
    assert done["oom_killed"] is False  # a SIGKILL, but not the kernel's out-of-memory killer's


@pytest.mark.parametrize("kill, says", [("SIGSEGV", "killed by SIGSEGV"), ("SIGKILL", "killed by SIGKILL")])
def test_a_child_killed_by_a_signal_stops_its_step_with_128_plus_the_signal_and_one_line(server, tmp_path, kill,
                                                                                       says):
    """common.run_child: a converter killed in its own process (the onnx2tf attempts) ends the step there, so no
    remedy is retried after a kill for memory; the line names what was killed."""
    _, control, _ = server
    step = script(tmp_path, f"""import sys
sys.path.insert(0, {str(SERVER.parent)!r})
from common import run_child
run_child([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.{kill})"], "the probe's child")
print("never reached")
""")
    done, out, err = run(control, ["python", step])
    assert done["exit_code"] == 128 + getattr(__import__("signal"), kill) and "never reached" not in out
    assert err.strip().splitlines()[-1] == f"ERROR: the probe's child was {says}"


def test_two_steps_run_side_by_side_and_the_server_keeps_serving(server, tmp_path):
    proc, control, _ = server
    step = script(tmp_path, "import sys, time\ntime.sleep(0.5)\nprint(sys.argv[1])\n")
    for rid in ("a", "b"):
        (control / f"{rid}.req.tmp").write_text(json.dumps({"argv": ["python", step, rid], "timeout": 30}))
        (control / f"{rid}.req.tmp").rename(control / f"{rid}.req")
    for rid in ("a", "b"):
        done, out, _ = run(control, ["python", step, rid + "2"], rid=rid + "2")
        assert done["exit_code"] == 0 and out.strip() == rid + "2"
    for rid in ("a", "b"):  # started first, but a loaded host may finish them after the second pair
        deadline = time.monotonic() + 60
        while not (control / f"{rid}.done").exists():
            assert time.monotonic() < deadline
            (control / "alive").touch()
            time.sleep(0.02)
        assert (control / f"{rid}.out").read_text().strip() == rid
    assert proc.poll() is None


def test_a_failed_preload_is_said_once_and_the_server_still_serves(server):
    proc, control, _ = server
    proc.kill()
    _, err = proc.communicate()
    assert "could not preload no_such_mod" in err


def test_skipped_modules_stay_out_of_the_preload_and_a_step_can_still_import_them(tmp_path):
    """--skip: a preloaded library's optional import (TensorFlow's of JAX) is not made, and a step imports it."""
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "heavy_opt.py").write_text("LOADED = True\n")
    (lib / "wants_opt.py").write_text("try:\n    import heavy_opt\nexcept ImportError:\n    heavy_opt = None\n")
    control, scratch = tmp_path / "ctl", tmp_path / "scratch"
    control.mkdir()
    scratch.mkdir()
    (control / "alive").touch()
    proc = subprocess.Popen([sys.executable, str(SERVER), "--control", str(control), "--preload", "wants_opt",
                             "--skip", "heavy_opt", "--scratch", str(scratch), "--heartbeat", "5"],
                            env=dict(os.environ, PYTHONPATH=str(lib)), stderr=subprocess.PIPE, text=True)
    try:
        step = script(tmp_path, "import sys\nimport wants_opt\nprint('preloaded without it', wants_opt.heavy_opt is None,"
                                " 'heavy_opt' in sys.modules)\nimport heavy_opt\nprint('imported', heavy_opt.LOADED)\n")
        done, out, err = run(control, ["python", step])
        assert done["exit_code"] == 0, err
        assert "preloaded without it True False" in out and "imported True" in out
    finally:
        proc.kill()
        proc.communicate()


def test_the_worker_exits_when_the_host_stops_its_heartbeat(tmp_path):
    control = tmp_path / "ctl"
    control.mkdir()
    (control / "alive").touch()
    os.utime(control / "alive", (time.time() - 100, time.time() - 100))
    proc = subprocess.run([sys.executable, str(SERVER), "--control", str(control), "--heartbeat", "5"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0 and "heartbeats" in proc.stderr


def test_a_step_the_host_stops_is_killed_alone_and_its_neighbour_finishes(server, tmp_path):
    proc, control, _ = server
    sleeper = script(tmp_path, "import time\ntime.sleep(300)\n", "sleeper.py")
    neighbour = script(tmp_path, "import time\ntime.sleep(1.0)\nprint('finished')\n", "neighbour.py")
    for rid, step in (("s", sleeper), ("n", neighbour)):
        (control / f"{rid}.req.tmp").write_text(json.dumps({"argv": ["python", step], "timeout": 600}))
        (control / f"{rid}.req.tmp").rename(control / f"{rid}.req")
    wait_for(control, "s.taken")
    (control / "s.kill").touch()
    killed = json.loads(wait_for(control, "s.done").read_text())
    assert killed["exit_code"] == 137 and killed["signal"] == 9 and not killed["timed_out"]
    assert killed["seconds"] < 200  # killed, not slept out
    done, out, _ = run(control, ["python", neighbour], rid="n2")  # and a new one runs meanwhile
    assert json.loads(wait_for(control, "n.done").read_text())["exit_code"] == 0
    assert (control / "n.out").read_text().strip() == "finished" and done["exit_code"] == 0
    assert proc.poll() is None


def wait_for(control, name, seconds=120):
    """CONTROL/NAME once it exists (the host's heartbeat kept up meanwhile)."""
    deadline = time.monotonic() + seconds
    while not (control / name).exists():
        assert time.monotonic() < deadline, f"no {name} after {seconds} s"
        (control / "alive").touch()
        time.sleep(0.02)
    return control / name
