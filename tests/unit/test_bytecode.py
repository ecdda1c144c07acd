"""images/shared/bytecode.py, the recipe's build-time helper that compiles only what a stack's steps import: run on a
made-up virtualenv and steps folder, as the Dockerfile runs it."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

HELPER = Path(__file__).resolve().parents[2] / "images" / "shared" / "bytecode.py"


def run(tmp_path, *args):
    (tmp_path / "tmp").mkdir(exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "venv"), PYTHONDONTWRITEBYTECODE="1", TMPDIR=str(tmp_path / "tmp"))
    return subprocess.run([sys.executable, str(HELPER), "--steps", str(tmp_path / "steps"),
                           "--root", str(tmp_path / "venv"), *args], capture_output=True, text=True, env=env)


def write(path, text=""):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def pyc(path):
    """The flags of the .pyc of `path` (PEP 552: 1 = hash-based, unchecked), or None when it has none."""
    cached = Path(importlib.util.cache_from_source(str(path)))
    return int.from_bytes(cached.read_bytes()[4:8], "little") if cached.is_file() else None


def test_only_what_the_smoke_test_the_preload_list_and_the_steps_import_is_compiled(tmp_path):
    venv, steps = tmp_path / "venv", tmp_path / "steps"
    for name in ("early", "preloaded", "top", "inner", "pkg/__init__", "pkg/sub", "pkg/other", "unused",
                 "unused_pkg/__init__", "via_helper"):
        write(venv / f"{name}.py", "VALUE = 1\n")
    write(venv / "smoked.py", "import os\nassert os.environ['STACK_VAR'] == 'on'\nimport dep\n")
    write(venv / "dep.py")
    write(venv / "home.py", "import os\nopen(os.path.join(os.environ['HOME'], 'config'), 'w').close()\n")
    write(venv / "broken.py", "raise RuntimeError('no')\n")
    write(steps / "convert.py", "import top, home\nfrom pkg import sub, VALUE_THAT_IS_NO_MODULE\n"
                                "from . import relative_is_skipped\n\ndef main():\n    import inner, broken\n")
    write(steps / "helper.py", "import via_helper\n")
    write(steps / "runner.py", "import helper\n")  # a steps-folder module: read, not imported

    proc = run(tmp_path, "--smoke-test", "import early, smoked", "--preload", "preloaded",
               "--environment", json.dumps({"STACK_VAR": "on"}))
    assert proc.returncode == 0, proc.stderr
    summary = proc.stdout.strip().splitlines()[-1]
    assert summary.startswith("bytecode: 10 modules compiled (") and " MB) under " in summary, summary
    assert summary.endswith("; 1 did not import: broken"), summary  # a name in pkg that is no module is no failure
    for name in ("early", "smoked", "dep", "preloaded", "top", "home", "inner", "pkg/__init__", "pkg/sub",
                 "via_helper"):
        assert pyc(venv / f"{name}.py") == 1, name
    for name in ("pkg/other", "unused", "unused_pkg/__init__", "broken"):
        assert pyc(venv / f"{name}.py") is None, name
    assert not list(steps.rglob("*.pyc"))  # the steps' own modules are not compiled (not under the root)
    assert list((tmp_path / "tmp").iterdir()) == []  # what importing wrote into HOME went with the scratch folder


def test_a_failed_smoke_test_is_said_and_compiling_nothing_fails(tmp_path):
    write(tmp_path / "venv" / "lib.py")
    write(tmp_path / "steps" / "step.py", "import not_installed\n")
    proc = run(tmp_path, "--smoke-test", "import not_there")
    assert proc.returncode == 1
    assert "bytecode: 0 modules compiled" in proc.stdout
    assert "did not import: the smoke test (ModuleNotFoundError: No module named 'not_there'), not_installed" \
        in proc.stdout
    assert "nothing was compiled" in proc.stderr
