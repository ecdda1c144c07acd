"""`orchestrator batch` on the fake engine: jobs read from YAML and checked, at most N at once, a failed job does not
stop the others, one summary, exit 6 when any failed."""

import json
import re
import threading
import time

import pytest

from fakes import exit_with, ok_step
from orchestrator import batch, cli
from orchestrator.errors import InputError


def jobs_file(tmp_path, keras_file, text=None):
    path = tmp_path / "jobs.yaml"
    path.write_text(text or f"""
defaults:
  from: keras
  flags: {{quantize: float16}}
jobs:
  - {{name: a, input: {keras_file}, output_dir: out/a}}
  - {{name: b, input: {keras_file}, output_dir: out/b, flags: {{quantize: dynamic}}}}
  - {{name: missing, input: nowhere.h5, output_dir: out/c}}
  - {{name: d, input: {keras_file}, output_dir: out/d, verify: false}}
""")
    return path


def test_jobs_are_read_with_defaults_and_relative_paths(tmp_path, keras_file):
    jobs = batch.read_jobs(jobs_file(tmp_path, keras_file))
    assert [j.name for j in jobs] == ["a", "b", "missing", "d"]
    assert jobs[0].options == {"quantize": "float16"} and jobs[1].options == {"quantize": "dynamic"}
    assert jobs[2].input == tmp_path / "nowhere.h5" and jobs[0].output_dir == tmp_path / "out" / "a"
    assert jobs[3].verify is False and jobs[0].source == "keras" and jobs[0].to == "tflite"


@pytest.mark.parametrize("text, why", [
    ("jobs: [", "not valid YAML at line"),
    ("jobs: []", "not a jobs file: jobs: [] should be non-empty"),
    ("jobs:\n  - {from: keras, input: m.h5, output_dir: o, colour: red}", "Additional properties"),
    ("jobs:\n  - {from: keras, input: m.h5}", "job 1 has no output_dir"),
    ("jobs:\n  - {from: keras, input: m.h5, output_dir: o}\n  - {from: keras, input: n.h5, output_dir: o}",
     "which another job writes too"),
])
def test_a_bad_jobs_file_is_one_line_naming_it(tmp_path, keras_file, text, why):
    path = jobs_file(tmp_path, keras_file, text)
    with pytest.raises(InputError, match=re.escape(why)) as exc:
        batch.read_jobs(path)
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_failed_jobs_do_not_stop_the_others_and_exit_6(built_engine, tmp_path, keras_file, monkeypatch, capsys):
    def step(spec, out):  # --quantize dynamic fails in the converter
        return exit_with(1, "boom\n")(spec, out) if "dynamic" in spec.command else ok_step(spec, out)

    built_engine.behaviours["to_tflite.py"] = step
    monkeypatch.setattr(cli, "_step_engine", lambda cache=True, jobs=1: built_engine)
    with pytest.raises(SystemExit) as exc:
        cli.main(["batch", str(jobs_file(tmp_path, keras_file)), "-j", "2", "--json", "--quiet"])
    out, err = capsys.readouterr()
    assert exc.value.code == 6 and err.strip() == "orchestrator: error: 2 of 4 jobs failed: b, missing"
    doc = json.loads(out)
    by = {r["name"]: r for r in doc["jobs"]}
    assert [r["name"] for r in doc["jobs"]] == ["a", "b", "missing", "d"] and doc["passed"] is False
    assert by["a"]["passed"] and by["d"]["passed"] and by["d"]["verified"] is False
    assert by["b"]["exit_code"] == 3 and "boom" in by["b"]["error"] and not (tmp_path / "out" / "b").exists()
    assert by["missing"]["exit_code"] == 2 and "no such file" in by["missing"]["error"]
    assert (tmp_path / "out" / "a" / "manifest.json").is_file() and (tmp_path / "out" / "d" / "model.tflite").is_file()


def test_at_most_n_jobs_run_at_once(built_engine, tmp_path, keras_file):
    running, peak, lock = [0], [0], threading.Lock()

    def slow(spec, out):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.2)
        with lock:
            running[0] -= 1
        return ok_step(spec, out)

    built_engine.behaviours["to_tflite.py"] = slow
    text = "jobs:\n" + "".join(f"  - {{from: keras, input: {keras_file}, output_dir: o{i}, verify: false}}\n"
                              for i in range(5))
    for workers, want in ((1, 1), (2, 2)):
        peak[0] = 0
        folder = tmp_path / f"w{workers}"
        folder.mkdir()
        jobs = batch.read_jobs(jobs_file(folder, keras_file, text))
        records = batch.run_batch(lambda: built_engine, jobs, workers=workers)
        assert all(r["passed"] for r in records) and peak[0] == want
    table = batch.table(records, 1.0)
    assert table.splitlines()[-1] == "5 of 5 jobs passed in 1.0 s" and "keras -> tflite" in table
