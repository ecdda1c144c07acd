"""Atomic output (orchestrator/staging.py) under faults: two conversions into one OUTPUT_DIR, an interrupt during
the commit, SIGTERM unwinding like Ctrl-C. The real CLI's side is tests/e2e/test_e2e_faults.py."""

import os
import signal
from pathlib import Path

import pytest

from orchestrator import cli, staging
from orchestrator.errors import Terminated, UsageError


def test_a_second_conversion_into_the_same_output_dir_is_refused_while_the_first_runs(tmp_path):
    out = tmp_path / "out"
    with staging.Staging(out) as first:
        with pytest.raises(UsageError, match=rf"{out}: another conversion is writing it \(pid {os.getpid()}\)"):
            with staging.Staging(out):
                pass
        (first.path / "model.tflite").write_bytes(b"first")
        first.commit()
    assert (out / "model.tflite").read_bytes() == b"first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no lock file, no staging folder left
    # once the first is done, the output exists: refused for that reason, unless --force
    with pytest.raises(UsageError, match="exists and is not empty; pass --force"):
        staging.Staging(out)
    with staging.Staging(out, force=True) as again:
        (again.path / "model.tflite").write_bytes(b"second")
        again.commit()
    assert (out / "model.tflite").read_bytes() == b"second"


def test_the_output_is_checked_again_under_the_lock(tmp_path):
    """Both checked OUTPUT_DIR before either wrote it; the first committed: the second is refused at its start."""
    out = tmp_path / "out"
    late = staging.Staging(out)  # its first check: OUTPUT_DIR absent
    with staging.Staging(out) as first:
        (first.path / "a").write_text("x")
        first.commit()
    with pytest.raises(UsageError, match="exists and is not empty"):
        with late:
            pass
    assert (out / "a").read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_an_interrupt_during_the_commit_acts_once_the_commit_is_whole(tmp_path, monkeypatch, python_sigint):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.tflite").write_bytes(b"old")
    real_rename = Path.rename

    def rename_then_ctrl_c(self, target):
        # to this thread (the main one, which acts on it), between moving the old output away and the new one in
        signal.raise_signal(signal.SIGINT)
        return real_rename(self, target)

    with pytest.raises(KeyboardInterrupt):
        with staging.Staging(out, force=True) as stage:
            (stage.path / "new.tflite").write_bytes(b"new")
            monkeypatch.setattr(Path, "rename", rename_then_ctrl_c)
            stage.commit()
    monkeypatch.setattr(Path, "rename", real_rename)
    assert sorted(p.name for p in out.iterdir()) == ["new.tflite"]  # the new output, whole: never a mix, never none
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_sigterm_unwinds_like_ctrl_c(monkeypatch):
    monkeypatch.setattr(signal, "getsignal", lambda sig: signal.SIG_DFL)
    before = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        cli._terminate_like_ctrl_c()
        with pytest.raises(Terminated) as caught:
            os.kill(os.getpid(), signal.SIGTERM)
            signal.sigtimedwait([], 0.1) if hasattr(signal, "sigtimedwait") else None
        assert caught.value.signum == signal.SIGTERM and isinstance(caught.value, KeyboardInterrupt)
    finally:
        signal.signal(signal.SIGTERM, before)
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
