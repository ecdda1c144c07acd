"""`orchestrator compare A B` on the fake engine: verification's three runs with A as the reference, each side's
facts, exit 4 when the outputs differ."""

import json
from pathlib import Path

import pytest

from fakes import failing_compare
from orchestrator import cli, compare


def tflites(tmp_path):
    for name in ("a", "b"):
        (tmp_path / f"{name}.tflite").write_bytes(b"\x00\x00\x00\x00TFL3" + name.encode() * 4)
    return tmp_path / "a.tflite", tmp_path / "b.tflite"


def test_b_runs_on_the_inputs_a_made_and_each_side_is_read(built_engine, tmp_path):
    a, b = tflites(tmp_path)
    found = compare.compare(built_engine, a, b, options={"seed": 3})
    scripts = [(Path(s.command[1]).name, s.command) for s in built_engine.specs]
    assert [name for name, _ in scripts] == ["run_model.py", "run_model.py", "compare.py", "report_model.py",
                                             "report_model.py"]
    assert "--plan" in scripts[0][1] and json.loads(scripts[0][1][scripts[0][1].index("--plan") + 1])["seed"] == 3
    assert "--inputs" in scripts[1][1]  # B is run on A's inputs
    assert found["passed"] and found["a"]["format"] == found["b"]["format"] == "tflite"
    assert found["a"]["facts"]["latency"]["threads_1"]["median_ms"] == 0.1
    assert "the same within tolerance" in compare.describe(found)[-1]


def test_an_option_compare_does_not_take_is_refused(built_engine, tmp_path):
    a, b = tflites(tmp_path)
    with pytest.raises(Exception, match="compare: no option --keep_nchw"):
        compare.compare(built_engine, a, b, options={"keep_nchw": "all"})


def test_outputs_that_differ_exit_4_after_the_table(built_engine, tmp_path, monkeypatch, capsys):
    a, b = tflites(tmp_path)
    built_engine.behaviours["compare.py"] = failing_compare
    monkeypatch.setattr(cli, "_engine", lambda: built_engine)
    with pytest.raises(SystemExit) as exc:
        cli.main(["compare", str(a), str(b), "--quiet"])
    out, err = capsys.readouterr()
    assert exc.value.code == 4 and "output y: max abs 0.5" in out and "DIFFERS" in out and "they differ" in out
    assert err.strip().startswith("orchestrator: error: verification failed: output 'y' differs") and \
        err.count("\n") == 1
