import pytest

from orchestrator import cli, engine
from orchestrator.errors import EnvironmentProblem


def run(capsys, *argv):
    with pytest.raises(SystemExit) as exc:
        cli.main(list(argv))
        raise SystemExit(0)
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


def test_routes_and_plan(capsys):
    code, out, _ = run(capsys, "routes")
    assert code == 0 and "keras -> tflite  [tf2]" in out
    code, out, _ = run(capsys, "plan", "keras")
    assert code == 0 and "keras_to_tflite" in out


def test_help_lists_commands(capsys):
    code, out, err = run(capsys, "--help")
    assert code == 0
    text = out + err
    for command in ("convert", "plan", "routes", "images", "sample"):
        assert command in text


@pytest.mark.parametrize("argv, code, message", [
    (["convert", "kerass", "m.h5", "out"], 2, "unknown format 'kerass'"),
    (["plan", "keras", "--to", "onnx"], 2, "no route from keras to onnx"),
    (["convert", "keras", "/nonexistent/m.h5", "out"], 2, "/nonexistent/m.h5: no such file"),
])
def test_errors_are_one_line_with_exit_code(capsys, argv, code, message):
    got, _, err = run(capsys, *argv)
    assert got == code
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_no_engine_is_exit_5_with_the_fix(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing.sock")
    code, _, err = run(capsys, "engine")
    assert code == 5 and "no Docker engine answers" in err and "make engine" in err


def test_debug_shows_the_traceback(monkeypatch, tmp_path):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing.sock")
    with pytest.raises(EnvironmentProblem, match="no Docker engine"):
        cli.main(["engine", "--debug"])


def test_no_flag_spelling():
    assert cli._normalize_argv(["convert", "--no-verify", "--no-build", "--x"]) == [
        "convert", "--verify=False", "--build=False", "--x"]


def test_engine_module_is_the_only_docker_importer():
    import pathlib
    import re

    pkg = pathlib.Path(engine.__file__).parent
    importers = [p.name for p in pkg.glob("*.py") if re.search(r"^\s*(import docker|from docker)", p.read_text(), re.M)]
    assert importers == ["engine.py"]
