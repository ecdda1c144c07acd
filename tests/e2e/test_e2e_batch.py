"""`orchestrator batch` through the real CLI: several conversions at once from one YAML file, one summary."""

import json
import os
import time

import pytest

from clihelp import cli, cli_env, last_line, manifest, worker_starts

pytestmark = pytest.mark.e2e


def test_batch_runs_jobs_side_by_side_and_reports_each(samples, tmp_path):
    model = samples[("keras", "cnn")] / "model.h5"
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(f"""
defaults: {{from: keras, input: {model}}}
jobs:
  - {{name: tflite-f16, output_dir: out/f16, flags: {{quantize: float16}}}}
  - {{name: layers, output_dir: out/layers, to: tfjs_layers_model}}
  - {{name: broken, input: missing.h5, output_dir: out/broken}}
""")
    session_id = f"batch-{os.getpid()}-{time.monotonic_ns()}"
    with worker_starts(session_id) as started:
        proc = cli("batch", jobs, "-j", "2", "--json", env=cli_env(ORCHESTRATOR_SESSION=session_id))
    assert proc.returncode == 6, proc.stderr[-3000:]
    # both jobs, each with its conversion and its source run at once, share one warm worker per stack
    assert started and len(started) == len(set(started)), started
    assert last_line(proc) == "orchestrator: error: 1 of 3 jobs failed: broken"
    doc = json.loads(proc.stdout)
    by = {r["name"]: r for r in doc["jobs"]}
    assert doc["workers"] == 2 and doc["passed"] is False
    for name, folder in (("tflite-f16", "f16"), ("layers", "layers")):
        assert by[name]["passed"] and by[name]["verified"] and by[name]["max_rel_err"] is not None
        assert manifest(tmp_path / "out" / folder)["verification"]["passed"] is True
    assert by["broken"]["exit_code"] == 2 and "missing.h5: no such file" in by["broken"]["error"]
    assert not (tmp_path / "out" / "broken").exists()
    # the table form: one row per job and a total
    proc = cli("batch", jobs, "-j", "1", "--quiet")
    assert proc.returncode == 6  # out/f16 exists now: refused without force, in its own row
    lines = proc.stdout.strip().splitlines()
    assert lines[-1].startswith("0 of 3 jobs passed") and "exists and is not empty" in proc.stdout
