"""`orchestrator check` on the fake engine: the route, the stack's op findings turned into problems and advice."""

import json

import pytest

from orchestrator import cli, preflight
from orchestrator.engine import RunResult
from orchestrator.errors import CheckFailed


def finding(**info):
    def behaviour(spec, out):
        (out / "step.json").write_text(json.dumps({"artifacts": [], "versions": {}, "info": {
            "ops": {"MatrixInverse": 1, "MatMul": 2}, "flex": [], "custom": [], "no_tfjs_kernel": [],
            "converter_error": "", **info}}))
        return RunResult(0, "", "", 0.1)
    return behaviour


def test_a_clean_model_passes_with_its_route(built_engine, keras_file):
    built_engine.behaviours["check_model.py"] = finding()
    found = preflight.check(built_engine, None, keras_file)
    assert found["passed"] and found["route"] == ["keras_to_tflite"] and found["stacks"] == ["tf2"]
    assert found["ops"] == {"MatrixInverse": 1, "MatMul": 2}
    command = built_engine.specs[-1].command
    assert command[1].endswith("check_model.py") and command[command.index("--to") + 1] == "tflite"


def test_flex_ops_fail_unless_the_flag_is_given(built_engine, keras_file):
    built_engine.behaviours["check_model.py"] = finding(flex=["MatrixInverse"])
    found = preflight.check(built_engine, "keras", keras_file)
    assert not found["passed"] and "--allow_flex_ops" in found["problems"][0]
    found = preflight.check(built_engine, "keras", keras_file, options={"allow_flex_ops": True})
    assert found["passed"] and "--allow_flex_ops keeps them" in found["advice"][0]


def test_a_custom_op_names_allow_custom_ops(built_engine, keras_file):
    built_engine.behaviours["check_model.py"] = finding(custom=["TFLite_Detection_PostProcess"])
    found = preflight.check(built_engine, "keras", keras_file)
    assert not found["passed"] and "--allow_custom_ops" in found["problems"][0]


def test_no_route_is_a_failed_check(built_engine, keras_file):
    with pytest.raises(CheckFailed, match="no route from keras to onnx"):
        preflight.check(built_engine, "keras", keras_file, to="onnx")


def test_the_cli_prints_the_findings_then_exits_7(built_engine, keras_file, monkeypatch, capsys):
    built_engine.behaviours["check_model.py"] = finding(flex=["MatrixInverse"])
    monkeypatch.setattr(cli, "_engine", lambda: built_engine)
    with pytest.raises(SystemExit) as exc:
        cli.main(["check", str(keras_file), "--quiet"])
    out, err = capsys.readouterr()
    assert exc.value.code == 7 and "problem: no TFLite builtin for MatrixInverse" in out
    assert err.startswith("orchestrator: error: check: no TFLite builtin for MatrixInverse") and err.count("\n") == 1
