"""onnx2tf's attempts forked by AttemptForker (images/onnx2tf/steps/onnx2tf_attempt.py) as a local process tree, with
a stand-in for onnx2tf.convert: what the step relies on (status, log, kill, and that the forker goes with the step).
The real conversions are in tests/e2e (test_e2e_torch.py, test_e2e_onnx_wild.py)."""

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

IMAGES = Path(__file__).resolve().parents[2] / "images"
sys.path[:0] = [str(IMAGES / "onnx2tf" / "steps"), str(IMAGES / "shared")]
import onnx2tf_attempt  # noqa: E402


def stand_in(params_file):
    """onnx2tf.convert for these tests: PARAMS.json's "do" says what to do."""
    params = json.loads(Path(params_file).read_text())
    what = params["do"]
    print(f"converting in {os.getcwd()} pid {os.getpid()}", flush=True)
    if what == "exit":
        sys.exit(params["code"])
    if what == "raise":
        raise ValueError("onnx2tf gave up")
    if what == "sleep":
        time.sleep(60)
    if what == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    Path("marker").write_text("converted")


@pytest.fixture
def forker(monkeypatch):
    monkeypatch.setattr(onnx2tf_attempt, "convert", stand_in)  # before the fork: the forked copies have it
    f = onnx2tf_attempt.AttemptForker()
    yield f
    f.close()


def attempt(forker, tmp_path, name, **params):
    (tmp_path / f"{name}.json").write_text(json.dumps(params))
    (tmp_path / f"{name}.log").write_text("")
    return forker.start(str(tmp_path / f"{name}.json"), str(tmp_path / f"{name}.log"), str(tmp_path))


def test_attempts_run_forked_one_after_another_with_their_status_and_log(forker, tmp_path):
    ok = attempt(forker, tmp_path, "ok", do="convert")
    assert ok.wait() == 0 and (tmp_path / "marker").read_text() == "converted"
    log = (tmp_path / "ok.log").read_text()
    assert f"converting in {tmp_path} pid {ok.pid}" in log and ok.pid not in (os.getpid(), forker.pid)
    assert attempt(forker, tmp_path, "exit", do="exit", code=3).wait() == 3
    assert attempt(forker, tmp_path, "raise", do="raise").wait() == 1
    assert "ValueError: onnx2tf gave up" in (tmp_path / "raise.log").read_text()  # the traceback, in its log
    assert attempt(forker, tmp_path, "die", do="die").wait() == -signal.SIGKILL  # as Popen says a signal


def test_a_killed_attempt_ends_at_once_and_the_next_one_runs(forker, tmp_path):
    slow = attempt(forker, tmp_path, "slow", do="sleep")
    started = time.monotonic()
    slow.kill()
    assert slow.wait() == -signal.SIGKILL and time.monotonic() - started < 10
    assert attempt(forker, tmp_path, "after", do="convert").wait() == 0


def test_the_forker_exits_when_the_step_closes_it(monkeypatch):
    monkeypatch.setattr(onnx2tf_attempt, "convert", stand_in)
    f = onnx2tf_attempt.AttemptForker()
    f.close()
    with pytest.raises(ChildProcessError):  # it exited, and close() reaped it
        os.waitpid(f.pid, os.WNOHANG)


STATE = {"set_in_parent": False}  # changed at run time here: a fork sees the change, a fresh interpreter would not


def fake_cli():
    import argparse

    args = argparse.ArgumentParser().add_argument_group()  # noqa: F841 (a CLI reads sys.argv, as onnxsim's does)
    print("argv", sys.argv[1:], "forked", STATE["set_in_parent"], "pid", os.getpid())
    print("to stderr", file=sys.stderr)
    return 3 if "--fail" in sys.argv else 0


def test_a_command_onnx2tf_runs_is_a_fork_with_its_output_and_status_and_others_run_as_before(monkeypatch):
    import subprocess

    STATE["set_in_parent"] = True
    calls = []
    real = lambda args, *a, **kw: calls.append(args) or b"real"  # noqa: E731
    check_output = onnx2tf_attempt.forking(real, "onnxsim", fake_cli)
    out = check_output(["onnxsim", "in.onnx", "in.onnx"], stderr=subprocess.PIPE)
    words = out.decode().split()
    assert words[:4] == ["argv", "['in.onnx',", "'in.onnx']", "forked"] and words[4] == "True"
    assert int(words[-1]) != os.getpid() and calls == []  # its own process, not this one
    assert check_output(["onnxsim", "a", "b"], text=True).startswith("argv ['a', 'b']")
    with pytest.raises(subprocess.CalledProcessError) as failed:
        check_output(["onnxsim", "a", "b", "--fail"], stderr=subprocess.PIPE)
    assert failed.value.returncode == 3 and b"to stderr" in failed.value.stderr and b"argv" in failed.value.output
    assert check_output(["sng4onnx", "x"]) == b"real" and calls == [["sng4onnx", "x"]]  # any other command: as before
    code, _, err = onnx2tf_attempt.run_main_forked(lambda: os.kill(os.getpid(), signal.SIGKILL), ["x"])
    assert code == -signal.SIGKILL
