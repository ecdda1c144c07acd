"""PyTorch / ONNX / Darknet routes: options, host-side input checks, planning and verification wiring (no Docker)."""

import json
import pickle
import zipfile

import pytest
from fakes import field

from orchestrator import formats, machine, options, planner
from orchestrator import verify as verification
from orchestrator.errors import InputError, UsageError

PYTORCH = planner.plan("pytorch", "tflite")
ONNX = planner.plan("onnx", "tflite")
DARKNET = planner.plan("darknet", "tflite")


def test_chains_cross_stacks():
    assert [s.name for s in PYTORCH] == ["pytorch_to_onnx", "onnx_to_tflite"]
    assert planner.stacks_of(PYTORCH) == ["torch", "onnx2tf"]
    assert [s.name for s in DARKNET] == ["darknet_to_keras", "keras_to_tflite"]
    assert [s.name for s in planner.plan("onnx", "tf_saved_model")] == ["onnx_to_tf_saved_model"]


def test_dashed_options_and_model_code(tmp_path):
    code = tmp_path / "net.py"
    code.write_text("class Net: pass\n")
    got = options.validate(PYTORCH, {"input-shape": (1, 3, 32, 32), "model-code": f"{code}:Net",
                                     "model-args": '{"num_classes": 10}', "opset": 17})
    assert got["input_shape"] == "1,3,32,32" and got["opset"] == 17
    assert got["model_code"] == options.CodeRef(code.resolve(), "Net")
    assert json.loads(got["model_args"]) == {"num_classes": 10}
    inputs, mounted = options.mounts(["model_code"], got)
    # the code's folder is mounted (it may import its neighbours); the step gets FILE:Name in the container
    assert inputs == {str(tmp_path.resolve()): "/in/opt/model_code"}
    assert mounted["model_code"] == "/in/opt/model_code/net.py:Net"
    assert options.as_args(["model_code"], got, mounted) == ["--model_code", "/in/opt/model_code/net.py:Net"]


@pytest.mark.parametrize("value, error, match", [
    ("net.py", UsageError, "wants FILE.py:Name"),
    ("missing.py:Net", InputError, "no such file"),
    ("{tmp}/net.txt:Net", InputError, "is not a Python file"),
    ("{tmp}/net.py:1Net", UsageError, "wants FILE.py:Name"),
])
def test_bad_model_code(tmp_path, value, error, match):
    (tmp_path / "net.py").write_text("")
    (tmp_path / "net.txt").write_text("")
    with pytest.raises(error, match=match):
        options.validate(PYTORCH, {"input_shape": "1,3,8,8", "model_code": value.format(tmp=tmp_path)})


@pytest.mark.parametrize("bad", ["{oops", "3"])
def test_model_args_must_be_a_json_list_or_object(bad):
    with pytest.raises(UsageError, match="--model_args"):
        options.validate(PYTORCH, {"input_shape": "1,3,8,8", "model_args": bad})


def test_required_and_paired_options(tmp_path):
    with pytest.raises(UsageError, match="pytorch -> onnx needs --input_shape"):
        options.validate(PYTORCH, {})
    with pytest.raises(UsageError, match="darknet -> tflite needs --weights"):  # the cfg's input adapter needs it
        options.validate(DARKNET, {})
    with pytest.raises(UsageError, match="--quantize int8-full needs --calibration"):
        options.validate(ONNX, {"quantize": "int8-full"})
    with pytest.raises(UsageError, match="--mean needs --std"):
        options.validate(ONNX, {"mean": "0.5"})
    # int8-full is onnx2tf's; the Keras route's TFLite converter step does not offer it
    with pytest.raises(UsageError, match="not available in step keras_to_tflite"):
        options.validate(planner.plan("keras", "tflite"), {"quantize": "int8-full", "calibration": str(tmp_path)})


def _write(path, data):
    path.write_bytes(data)
    return path


def test_pytorch_input_checks(tmp_path):
    zipped = tmp_path / "m.pt"
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("m/data.pkl", pickle.dumps({"a": 1}))
        z.writestr("m/data/0", bytes(8))
    assert formats.check_input("pytorch", zipped) == zipped.resolve()
    with pytest.raises(InputError, match="cut.pt: is not a readable zip archive: truncated or corrupt"):
        formats.check_input("pytorch", _write(tmp_path / "cut.pt", zipped.read_bytes()[:-1]))
    keras = tmp_path / "k.pt"
    with zipfile.ZipFile(keras, "w") as z:
        z.writestr("config.json", "{}")
        z.writestr("model.weights.h5", b"")
    with pytest.raises(InputError, match=r"k.pt: is a Keras .keras archive, not a PyTorch model"):
        formats.check_input("pytorch", keras)
    other = tmp_path / "o.pt"
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("notes.txt", "hello")
    with pytest.raises(InputError, match=r"o.pt: is a zip archive but not a PyTorch file"):
        formats.check_input("pytorch", other)
    legacy = _write(tmp_path / "old.pt", pickle.dumps({"a": 1}, protocol=2))
    assert formats.check_input("pytorch", legacy) == legacy.resolve()
    with pytest.raises(InputError, match="is an HDF5 .Keras. file"):
        formats.check_input("pytorch", _write(tmp_path / "k.pt", b"\x89HDF\r\n\x1a\n" + b"\0" * 16))
    with pytest.raises(InputError, match="looks like an ONNX model"):
        formats.check_input("pytorch", _write(tmp_path / "o.pt", b"\x08\x07\x12\x07pytorch"))
    with pytest.raises(InputError, match=r"notes.pt: is not a PyTorch file"):
        formats.check_input("pytorch", _write(tmp_path / "notes.pt", b"hello"))


def test_onnx_and_darknet_input_checks(tmp_path):
    good = _write(tmp_path / "m.onnx", field(1, 7) + field(2, b"pytorch") + field(7, field(2, b"g")))
    assert formats.check_input("onnx", good) == good.resolve()
    with pytest.raises(InputError, match="cut.onnx: is not an ONNX model: truncated or corrupt"):
        formats.check_input("onnx", _write(tmp_path / "cut.onnx", good.read_bytes()[:-1]))
    with pytest.raises(InputError, match="nograph.onnx: is not an ONNX model: truncated or corrupt .the ModelProto "
                                         "has no field 7"):
        formats.check_input("onnx", _write(tmp_path / "nograph.onnx", b"\x08\x07\x12\x07pytorch"))
    with pytest.raises(InputError, match="is a PyTorch/zip file"):
        formats.check_input("onnx", _write(tmp_path / "z.onnx", b"PK\x03\x04"))
    with pytest.raises(InputError, match="no ModelProto"):
        formats.check_input("onnx", _write(tmp_path / "t.onnx", b"text"))
    cfg = tmp_path / "y.cfg"
    cfg.write_text("# comment\n[net]\nwidth=96\n")
    assert formats.check_input("darknet", cfg) == cfg.resolve()
    cfg.write_text("[convolutional]\nfilters=1\n")
    with pytest.raises(InputError, match=r"y.cfg: is not a Darknet .cfg: it must start with a \[net\] section"):
        formats.check_input("darknet", cfg)


def test_verification_runs_where_the_layout_bridge_is():
    def check(source, target, values=None):
        return verification.check_for(planner.plan(source, target), values)

    got = check("pytorch", "tflite")
    assert (got.reference.stack, got.reference.script) == ("torch", "run_torch.py")
    assert got.result.stack == "onnx2tf"  # its interpreter matches its converter, and it transposes NCHW
    assert got.compare_stack == "onnx2tf"  # compared in the result's own stack
    assert check("pytorch", "onnx").compare_stack == "onnx2tf"  # no tf2 image needed
    assert check("onnx", "tf_saved_model").reference == formats.get("onnx").runner
    assert check("darknet", "tflite").reference_format == "keras"
    assert check("onnx", "tfjs_graph_model") is None  # the onnx2tf step's result needs its own runner
    assert check("ssd", "tflite").reference_format == "ssd_graph" and check("ssd", "tflite").result.kind == "tflite_ssd"
    assert check("tfjs_layers_model", "tfjs_layers_model").compare_stack == "tf2"  # tfjs names tf2 to compare
    merged = check("tfjs_layers_model", "tflite", {"base_model": "b.h5", "base_layer": "x"})
    assert merged.reference_format == "keras"  # the step taking --base_model changes what the model computes
    assert check("tfjs_layers_model", "tflite").reference_format == "tfjs_layers_model"


def test_collect_keeps_layout_and_transpose_count(tmp_path):
    ref, got, cmp = (tmp_path / n for n in ("ref", "got", "cmp"))
    for d in (ref, got, cmp):
        d.mkdir()
    (cmp / "verification.json").write_text(json.dumps({"passed": True, "outputs": []}))
    (ref / "run.json").write_text(json.dumps({"inputs": [], "outputs": [], "samples": 0}))
    (ref / "inputs.npz").write_bytes(b"x")
    (got / "run.json").write_text(json.dumps({"inputs": [], "outputs": [], "samples": 0, "input_layout": {"x": "NCHW->NHWC"},
                                              "output_layout": {"y": "same"}, "transpose_ops": 2}))
    runs = [type("R", (), {"out_dir": d})() for d in (ref, got, cmp)]
    record = verification.Verification(None, {}).collect(runs, tmp_path / "keep")
    assert record["layout"] == {"input": {"x": "NCHW->NHWC"}, "output": {"y": "same"}}
    assert record["transpose_ops"] == 2


def test_pip_find_links_from_env_and_config(tmp_path, monkeypatch):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    monkeypatch.setattr(machine, "pip_config", lambda: {"global.find-links": f"file://{wheels} https://x.example/"})
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    assert machine.pip_find_links() == [wheels]
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "absent"))
    assert machine.pip_find_links() == []
