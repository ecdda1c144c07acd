"""The wizard through a real terminal (tmux): the questions appear, the defaults are taken with Enter, the
equivalent command is printed and the conversion runs on real images."""

import os
import shutil
import subprocess
import time

import pytest

from clihelp import REPO, manifest

pytestmark = pytest.mark.e2e


def tmux(*args):
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


def screen(session):
    return tmux("capture-pane", "-p", "-J", "-S", "-200", "-t", session)


def wait_for(session, text, timeout=600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shown = screen(session)
        if text in shown:
            return shown
        time.sleep(0.3)
    raise AssertionError(f"{text!r} never appeared; the terminal shows:\n{screen(session)}")


@pytest.fixture
def terminal(tmp_path):
    if shutil.which("tmux") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("tmux is not installed (make test installs it: scripts/test-tools.sh)")
        pytest.skip("tmux is not installed")
    session = f"wizard-{os.getpid()}"
    env = f"PYTHONPATH={REPO} ORCHESTRATOR_NO_CACHE=1 ORCHESTRATOR_NO_REPORT= TERM=xterm-256color"
    tmux("new-session", "-d", "-s", session, "-x", "160", "-y", "50",
         f"cd {tmp_path} && env {env} python -m orchestrator wizard; echo WIZARD-EXIT=$?; sleep 3600")
    yield session
    subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def test_the_wizard_detects_offers_defaults_prints_the_command_and_converts(samples, terminal, tmp_path):
    model = samples[("keras", "cnn")] / "model.h5"
    out = tmp_path / "wizard-out"
    wait_for(terminal, "Model file or folder to convert:")
    tmux("send-keys", "-t", terminal, "-l", str(model))
    tmux("send-keys", "-t", terminal, "Enter")
    shown = wait_for(terminal, "Convert to:")
    assert f"detected keras: {model} is an HDF5 file" in shown and "-> tfjs_layers_model" in shown
    tmux("send-keys", "-t", terminal, "Enter")  # the default: tflite
    shown = wait_for(terminal, "Quantization:")
    assert "float16" in shown and "int8" in shown
    tmux("send-keys", "-t", terminal, "Down")  # float16
    tmux("send-keys", "-t", terminal, "Enter")
    wait_for(terminal, "Output folder:")
    tmux("send-keys", "-t", terminal, "C-a", "C-k")  # replace the suggested folder
    tmux("send-keys", "-t", terminal, "-l", str(out))
    tmux("send-keys", "-t", terminal, "Enter")
    shown = wait_for(terminal, "Run it now?")
    assert f"orchestrator convert keras {model} {out} --to tflite --quantize float16" in shown
    tmux("send-keys", "-t", terminal, "Enter")
    shown = wait_for(terminal, "WIZARD-EXIT=", timeout=900)
    assert "WIZARD-EXIT=0" in shown, shown
    m = manifest(out)
    assert m["route"]["from"] == "keras" and m["options"] == {"quantize": "float16"}
    assert m["verification"]["passed"] and (out / "report.html").is_file()
