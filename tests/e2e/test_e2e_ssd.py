"""`orchestrator convert ssd`: TF1 Object Detection API SSD checkpoints -> TFLite, on SSDs generated in the TF1
stack (ssd_mobilenet_v1, depth 0.25, 160x160, 3 classes, random weights)."""

import io
import json
import shutil
import tarfile

import pytest

from clihelp import REPORT_ON, cli, cli_env, last_line, make_samples, manifest

pytestmark = pytest.mark.e2e

POSTPROCESS = ["TFLite_Detection_PostProcess", "TFLite_Detection_PostProcess:1", "TFLite_Detection_PostProcess:2",
               "TFLite_Detection_PostProcess:3"]


@pytest.fixture(scope="session")
def ssd(stack_images, tmp_path_factory):
    return make_samples(tmp_path_factory.mktemp("ssd"), "ssd", ("float", "quant"))


def convert(src, out, *flags, env=None):
    proc = cli("convert", "ssd", src, out, *flags, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return manifest(out)


def check_verified(m, checks=True):
    v = m["verification"]
    assert v["passed"] is True
    names = sorted(o["name"] for o in v["outputs"])
    assert names == ["box_encodings", "class_predictions"]
    for o in v["outputs"]:
        assert o["passed"] and o["shape"][:2] == [1, 460]
    if checks:
        assert {c["name"]: c["passed"] for c in v["checks"]} == {
            "postprocess output shapes": True, "num_detections <= max_detections": True}
    else:
        assert "checks" not in v


def test_float_with_postprocessing_op(ssd, engine, tmp_path):
    m = convert(ssd["float"] / "ssd_model", tmp_path / "out")
    for name in ("model.tflite", "tflite_graph.pb", "tflite_graph.pbtxt", "manifest.json"):
        assert (tmp_path / "out" / name).is_file()
    assert [s["name"] for s in m["steps"]] == ["ssd_export", "ssd_toco"]
    assert all(s["stack"] == "tf1" and s["versions"]["tensorflow"] == "1.15.0" for s in m["steps"])
    assert all(engine.image(s["image"])["id"] == s["image_id"] for s in m["steps"])
    assert m["steps"][1]["info"]["output_arrays"] == POSTPROCESS
    assert m["input"]["model"]["height"] == 160 and m["input"]["sha256"]["pipeline.config"]
    check_verified(m)
    assert m["verification"]["steps"][0]["stack"] == "tf1" and m["verification"]["steps"][1]["stack"] == "tf2"


def test_float_without_op_from_tarball(ssd, tmp_path):
    m = convert(ssd["float"] / "ssd_model.tar.gz", tmp_path / "out", "--no-add_postprocessing_op")
    assert m["steps"][1]["info"]["output_arrays"] == ["raw_outputs/box_encodings", "raw_outputs/class_predictions"]
    check_verified(m, checks=False)
    assert list(m["input"]["sha256"]) == ["ssd_model.tar.gz"]


def test_uint8_with_quantization_aware_graph(ssd, tmp_path):
    m = convert(ssd["quant"] / "ssd_model", tmp_path / "out", "--quantize", "uint8", "--max_detections", "5")
    info = m["steps"][1]["info"]
    assert info["input_quantization"] == {"dtype": "uint8", "scale": pytest.approx(1 / 127), "zero_point": 128}
    v = m["verification"]
    assert v["mode"] == "uint8" and "quantization steps" in v["metric"] and v["tolerance"] == 12
    assert all(o["max_err_steps"] <= 12 and o["quant_step"] > 0 for o in v["outputs"])
    assert v["result_tensors"]["inputs"]["normalized_input_image_tensor"]["dtype"] == "uint8"
    check_verified(m)
    assert "max_detections 5" in v["checks"][1]["detail"]


def test_graphviz(ssd, tmp_path):
    m = convert(ssd["float"] / "ssd_model", tmp_path / "out", "--graphviz", env=cli_env(**REPORT_ON))
    dot = (tmp_path / "out" / "model.dot").read_text()
    svg = (tmp_path / "out" / "model.svg").read_text()
    assert dot.lstrip().startswith("digraph") and "<svg" in svg
    assert {"model.dot", "model.svg"} <= set(m["artifacts"])
    # the report shows TOCO's picture beside its own pages, and the post-processing op as a custom op
    page = (tmp_path / "out" / "report.html").read_text()
    assert "TOCO's GRAPHVIZ_DOT picture (model.svg)" in page and page.count("<svg") >= 2
    assert m["model"]["op_kinds"]["custom"] == {"TFLite_Detection_PostProcess": 1}


def test_mlir_converter(ssd, tmp_path):
    m = convert(ssd["float"] / "ssd_model", tmp_path / "out", "--converter", "mlir")
    assert [(s["name"], s["stack"]) for s in m["steps"]] == [("ssd_export", "tf1"), ("ssd_mlir", "tf2")]
    check_verified(m)


# -- bad input --------------------------------------------------------------------------------
def edited_copy(ssd, tmp_path, old, new):
    model = tmp_path / "model"
    shutil.copytree(ssd["float"] / "ssd_model", model)
    config = model / "pipeline.config"
    text = config.read_text()
    assert old in text
    config.write_text(text.replace(old, new))
    return model


def fails(proc, tmp_path, code, *fragments):
    assert proc.returncode == code, proc.stderr[-2000:]
    line = last_line(proc)
    for fragment in fragments:
        assert fragment in line, line
    assert "Traceback" not in proc.stderr and not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_faster_rcnn_is_refused(ssd, tmp_path):
    model = edited_copy(ssd, tmp_path, "  ssd {", "  faster_rcnn {")
    fails(cli("convert", "ssd", model, tmp_path / "out"), tmp_path, 2, "pipeline.config", "is a faster_rcnn model",
          "only SSD")


def test_keep_aspect_ratio_resizer_is_refused(ssd, tmp_path):
    model = edited_copy(ssd, tmp_path, "fixed_shape_resizer { height: 160 width: 160 }",
                        "keep_aspect_ratio_resizer { min_dimension: 160 max_dimension: 160 }")
    fails(cli("convert", "ssd", model, tmp_path / "out"), tmp_path, 2, "keep_aspect_ratio_resizer",
          "fixed_shape_resizer")


def test_missing_checkpoint_prefix(ssd, tmp_path):
    prefix = ssd["float"] / "ssd_model" / "model.ckpt-999"
    fails(cli("convert", "ssd", ssd["float"] / "ssd_model", tmp_path / "out", "--checkpoint", prefix), tmp_path, 2,
          str(prefix), "checkpoint prefix does not exist")


def test_tarball_with_parent_member_is_refused(ssd, tmp_path):
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        tar.add(ssd["float"] / "ssd_model", arcname="ssd_model")
        data = b"pwned"
        info = tarfile.TarInfo("../escaped.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    fails(cli("convert", "ssd", evil, tmp_path / "out"), tmp_path, 2, "evil.tar.gz", "'../escaped.txt'",
          "outside")
    assert not (tmp_path.parent / "escaped.txt").exists() and not (tmp_path / "escaped.txt").exists()


def test_uint8_of_a_float_graph_needs_default_ranges(ssd, tmp_path):
    fails(cli("convert", "ssd", ssd["float"] / "ssd_model", tmp_path / "out", "--quantize", "uint8"), tmp_path, 2,
          "pipeline.config", "--default_ranges_min")


def test_int8_is_not_an_ssd_mode(ssd, tmp_path):
    fails(cli("convert", "ssd", ssd["float"] / "ssd_model", tmp_path / "out", "--quantize", "int8"), tmp_path, 2,
          "--quantize int8 is not available in step ssd_toco")


def test_json_manifest_is_valid(ssd, tmp_path):
    m = convert(ssd["float"] / "ssd_model", tmp_path / "out", "--no-verify")
    json.dumps(m)
    assert m["verification"]["skipped"] is True


def test_config_and_checkpoint_overrides_from_another_folder(ssd, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(ssd["float"] / "ssd_model" / "pipeline.config", elsewhere / "my.config")
    for f in (ssd["float"] / "ssd_model").glob("model.ckpt.*"):
        shutil.copy(f, elsewhere / f.name.replace("model.ckpt", "trained"))
    m = convert(ssd["float"] / "ssd_model", tmp_path / "out", "--pipeline-config", elsewhere / "my.config",
                "--checkpoint", elsewhere / "trained", "--no-verify")
    assert m["input"]["model"]["pipeline_config"] == str(elsewhere / "my.config")
    assert m["input"]["model"]["checkpoint"] == str(elsewhere / "trained")
    assert "/in/opt/config/my.config" in m["steps"][0]["command"]
