"""PyTorch -> TFLite with LiteRT Torch (`--converter litert-torch`, litert_torch stack) and `--converter auto`
(LiteRT Torch beside torch.onnx + onnx2tf), through the real CLI on models generated in the torch stack."""

import json

import pytest

from clihelp import cli, last_line, manifest, recorded_error_matches

pytestmark = pytest.mark.e2e

SHAPE = "1,3,32,32"


def litert(*args):
    proc = cli("convert", "pytorch", *args, "--input-shape", SHAPE, "--converter", "litert-torch")
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = manifest(args[1])
    assert [(s["name"], s["stack"]) for s in m["steps"]] == [("pytorch_to_tflite_litert", "litert_torch")]
    assert m["steps"][0]["versions"]["litert_torch"].startswith("0.10")
    v = m["verification"]
    assert v["passed"] is True and [s["stack"] for s in v["steps"]] == ["torch", "litert_torch", "litert_torch"]
    assert recorded_error_matches(args[1], v)
    return m


def test_exported_program_converts_channels_last(torch_samples, tmp_path):
    m = litert(torch_samples["cnn"] / "model.pt2", tmp_path / "out")
    v, info = m["verification"], m["steps"][0]["info"]
    assert v["layout"]["input"] == {"input_0": "NCHW->NHWC"} and v["tolerance"] == 1e-4
    assert isinstance(v["transpose_ops"], int) and (tmp_path / "out" / "model.tflite").read_bytes()[4:8] == b"TFL3"
    assert m["options"]["converter"] == "litert-torch" and info["source_kind"] == "exported_program"


def test_state_dict_to_full_integer(torch_samples, tmp_path):
    sample = torch_samples["resnet"]
    meta = json.loads((sample / "sample.json").read_text())
    m = litert(sample / "state_dict.pt", tmp_path / "out", "--model-code", sample / meta["model_code"],
               "--model-args", meta["model_args"], "--quantize", "int8-full", "--calibration",
               sample / "calibration.npy")
    assert m["verification"]["mode"] == "int8-full"
    types = m["steps"][0]["info"]["io_types"]
    assert set(types["inputs"]) == {"int8"} and set(types["outputs"]) == {"int8"}


def test_pickled_module_dynamic_range_kept_nchw(torch_samples, tmp_path):
    sample = torch_samples["cnn"]
    meta = json.loads((sample / "sample.json").read_text())
    m = litert(sample / "module.pt", tmp_path / "out", "--model-code", sample / meta["model_code"], "--quantize",
               "dynamic", "--keep-nchw", "all")
    assert m["verification"]["mode"] == "dynamic"
    assert m["verification"]["layout"]["input"] == {"input_0": "same"}


def test_torchscript_is_refused_naming_the_other_converter(torch_samples, tmp_path):
    proc = cli("convert", "pytorch", torch_samples["cnn"] / "model.pt", tmp_path / "out", "--input-shape", SHAPE,
               "--converter", "litert-torch")
    assert proc.returncode == 2 and "--converter onnx2tf" in last_line(proc) and "model.pt" in last_line(proc)
    assert not (tmp_path / "out").exists()


def test_auto_keeps_the_verified_result_with_fewest_transposes(torch_samples, tmp_path):
    out = tmp_path / "out"
    proc = cli("convert", "pytorch", torch_samples["resnet"] / "model.pt2", out, "--input-shape", SHAPE,
               "--converter", "auto")
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = manifest(out)
    attempts = {a["converter"]: a for a in m["attempts"]}
    assert set(attempts) == {"onnx2tf", "litert-torch"} and all(a["passed"] for a in attempts.values())
    best = min(attempts.values(), key=lambda a: (a["transpose_ops"], a["size_bytes"]))
    assert best.get("chosen") and m["route"]["steps"] == best["route"] and m["options"]["converter"] == "auto"
    assert (out / "model.tflite").stat().st_size == best["size_bytes"]
    assert f"chose --converter {best['converter']}" in proc.stdout + proc.stderr


def test_auto_on_torchscript_records_why_litert_failed(torch_samples, tmp_path):
    out = tmp_path / "out"
    proc = cli("convert", "pytorch", torch_samples["cnn"] / "model.pt", out, "--input-shape", SHAPE,
               "--converter", "auto")
    assert proc.returncode == 0, proc.stderr[-3000:]
    attempts = {a["converter"]: a for a in manifest(out)["attempts"]}
    assert attempts["onnx2tf"]["chosen"] and not attempts["litert-torch"]["passed"]
    assert "TorchScript" in attempts["litert-torch"]["error"]
