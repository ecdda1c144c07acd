"""Helpers for the end-to-end tests: run the real CLI as a user would."""

import json
import os
import subprocess
import sys
from pathlib import Path


CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REPO = Path(__file__).resolve().parents[2]


def cli(*args, timeout=1800, **kw):
    """Run the orchestrator CLI as a user would; return the CompletedProcess (text)."""
    return subprocess.run([sys.executable, "-m", "orchestrator", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=kw.pop("cwd", None), **kw)


def last_line(proc):
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def manifest(out):
    return json.loads((Path(out) / "manifest.json").read_text())


