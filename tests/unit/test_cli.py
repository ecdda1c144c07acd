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


def test_engine_modules_are_the_only_docker_importers():
    """engine.py (one engine) and swarm.py (steps as Swarm services) are the only modules that talk to Docker."""
    import pathlib
    import re

    pkg = pathlib.Path(engine.__file__).parent
    importers = [p.name for p in pkg.glob("*.py") if re.search(r"^\s*(import docker|from docker)", p.read_text(), re.M)]
    assert sorted(importers) == ["engine.py", "swarm.py"]


def _file(path, data):
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize("make, argv, message", [
    (lambda t: str(t / "missing.h5"), ["keras"], "missing.h5: no such file or folder"),
    (lambda t: _file(t / "corrupt.h5", bytes(range(256)) * 16), ["keras"], "corrupt.h5: is not a Keras model"),
    (lambda t: "https://models.example/some/module/1", ["tf_hub", "--to", "tfjs_graph_model"],
     "is a URL; conversions run with no network"),
    (lambda t: _file(t / "notes.pt", b"hello"), ["pytorch", "--input-shape", "1,3,8,8"],
     "notes.pt: is not a PyTorch file"),
    (lambda t: _file(t / "m.pt", b"PK\x03\x04rest"), ["pytorch"], "pytorch -> onnx needs --input_shape"),
    (lambda t: _file(t / "m.cfg", b"[net]\nwidth=8\n"), ["darknet"], "darknet -> tflite needs --weights"),
    (lambda t: _file(t / "m.py", b"def build(): pass\n") + ":build", ["jax"], "needs --input_signature"),
    (lambda t: _file(t / "m.py", b"def build(): pass\n"), ["jax", "--input-signature", "3:float32"],
     "takes FILE.py:FUNCTION"),
    (lambda t: _file(t / "m.h5", b"\x89HDF\r\n\x1a\n" + bytes(64)), ["keras", "--bogus", "1"],
     "unknown option --bogus for keras -> tflite"),
])
def test_bad_input_is_refused_on_the_host_in_one_line_leaving_nothing(capsys, monkeypatch, tmp_path, make, argv,
                                                                       message):
    """Checked before any engine is asked (there is none here), and nothing is left behind."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing.sock")
    fmt, flags = argv[0], argv[1:]
    code, _, err = run(capsys, "convert", fmt, make(tmp_path), str(tmp_path / "out"), *flags)
    assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".out") or p.name == "out"]


def test_plan_validates_like_convert(capsys):
    code, _, err = run(capsys, "plan", "keras", "--bogus", "1")
    assert code == 2 and "unknown option --bogus for keras -> tflite" in err
    code, _, err = run(capsys, "plan", "keras", "--quantize", "int9")
    assert code == 2 and "--quantize must be one of" in err
    code, out, _ = run(capsys, "plan", "pytorch", "--to", "onnx")  # required options are shown, not demanded
    assert code == 0 and "required: --input_shape" in out


def test_sample_no_build_refuses_a_missing_image_and_writes_nothing(capsys, monkeypatch, tmp_path):
    """`sample --no-build` (air-gapped hosts): a stack image that is not there is refused in one line, before any
    output exists, instead of being built."""
    from fakes import FakeEngine

    fake = FakeEngine()
    monkeypatch.setattr(cli, "_engine", lambda: fake)
    code, _, err = run(capsys, "sample", "keras", str(tmp_path / "out"), "--no-build")
    assert code != 0 and "is missing; run `orchestrator images build" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists() and not fake.builds and not fake.specs


@pytest.mark.parametrize("argv, says", [
    (["sample", "keras", "OUT", "--kind", "cnn", "--quiett"], "sample: no option --quiett (options: --format, "),
    (["images", "list", "--all"], "images list: no option --all"),
    (["cache", "prune", "--older", "7d"], "cache prune: no option --older (options: --older-than, --max-size, --all)"),
    (["batch", "jobs.yaml", "--jobs", "2"], "batch: no option --jobs"),
])
def test_an_unknown_flag_is_refused_before_the_command_runs(capsys, monkeypatch, tmp_path, argv, says):
    from fakes import FakeEngine

    fake = FakeEngine()
    monkeypatch.setattr(cli, "_engine", lambda: fake)
    argv = [str(tmp_path / "out") if a == "OUT" else a for a in argv]
    code, out, err = run(capsys, *argv)
    assert code == 2 and says in err and err.count("\n") == 1 and out == ""
    assert not fake.specs and not fake.builds and not (tmp_path / "out").exists()


def test_known_flags_and_negations_pass_the_check():
    for argv in (["sample", "keras", "o", "--no-build", "--quiet", "--kind=cnn"], ["batch", "f", "-j", "2", "--json"],
                 ["convert", "keras", "m", "o", "--quantize", "int8", "--no-verify"], ["images", "build", "tf2"],
                 ["sample", "--help"], ["cache", "list", "--", "--help"]):
        cli._check_flags(cli._normalize_argv(argv))


def test_convert_json_prints_events_then_the_result(capsys, monkeypatch, built_engine, keras_file, tmp_path):
    import json

    monkeypatch.setattr(cli, "_step_engine", lambda cache=True, jobs=1: built_engine)
    code, out, _ = run(capsys, "convert", str(keras_file), str(tmp_path / "o"), "--json")
    events = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and events[0] == {"event": "log", "message": f"detected keras: {keras_file} is an HDF5 file "
                                                                  "(Keras .h5)"}
    assert events[-1]["event"] == "result" and events[-1]["manifest"]["route"]["from"] == "keras"
    assert all(e["event"] == "log" for e in events[:-1]) and len(events) > 3
    code, out, err = run(capsys, "convert", str(keras_file), str(tmp_path / "o"), "--json")  # exists: refused
    assert code == 2 and json.loads(out.splitlines()[-1])["event"] == "error" and err.count("\n") == 1


def test_images_build_takes_jobs(capsys, monkeypatch, built_engine, tmp_path):
    from orchestrator import images

    monkeypatch.setenv("ORCHESTRATOR_CACHE_DIR", str(tmp_path / "cache"))  # its build locks, not this host's
    monkeypatch.setattr(cli, "_engine", lambda: built_engine)
    asked = []
    real = images.build_stacks
    monkeypatch.setattr(images, "build_stacks", lambda engine, stacks, opts, force=False, jobs=2, log=None: asked.append(
        ([s.name for s in stacks], jobs)) or real(engine, stacks, opts, force=force, jobs=jobs, log=log))
    code, out, err = run(capsys, "images", "build", "tf2", "tfjs", "-j", "3")
    assert code == 0 and asked == [(["tf2", "tfjs"], 3)] and "tf2 is up to date" not in err
    assert out.split() == [images.get_stack("tf2").tag(), "sha256:tf2", images.get_stack("tfjs").tag(), "sha256:tfjs"]
    assert f"{images.get_stack('tfjs').tag()} is up to date" in err
    run(capsys, "images", "build", "tf2", "tf2")  # the default: two at once; a stack named twice is built once
    assert asked[-1] == (["tf2"], 2)
    for bad in ("0", "two"):
        code, out, err = run(capsys, "images", "build", "--jobs", bad)
        assert code == 2 and "-j/--jobs must be a whole number of at least 1" in err and out == ""
    assert len(asked) == 2 and not built_engine.builds
