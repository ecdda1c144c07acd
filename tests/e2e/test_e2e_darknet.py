"""Darknet cfg + weights -> Keras (TF2 stack, the project's own parser) -> TFLite, through the real CLI."""

import numpy as np
import pytest

from clihelp import make_samples, cli, last_line, manifest

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def yolo(stack_images, tmp_path_factory):
    return make_samples(tmp_path_factory.mktemp("darknet"), "darknet", ("yolov3-tiny", "yolov4-tiny"))


@pytest.mark.parametrize("kind", ["yolov3-tiny", "yolov4-tiny"])
def test_darknet_to_tflite(yolo, kind, tmp_path):
    sample = yolo[kind]
    out = tmp_path / "out"
    proc = cli("convert", "darknet", sample / "model.cfg", out, "--weights", sample / "model.weights")
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = manifest(out)
    assert [s["name"] for s in m["steps"]] == ["darknet_to_keras", "keras_to_tflite"]
    info = m["steps"][0]["info"]
    # every float of the weights file went into the model
    floats = (sample / "model.weights").stat().st_size // 4
    assert info["weights_floats"] in (floats - 4, floats - 5)  # header: 3 int32 + int64 (or int32) seen
    v = m["verification"]
    assert v["passed"] is True and len(v["outputs"]) == 2  # the two yolo heads
    shapes = sorted(o["shape"] for o in v["outputs"])
    assert shapes == [[1, 3, 3, 24], [1, 6, 6, 24]]  # 96x96 input, 3 anchors x (5 + 3 classes)
    assert v["steps"][0]["stack"] == "tf2" and isinstance(v["transpose_ops"], int)
    assert (out / "model.tflite").is_file() and (out / "model.h5").is_file()
    ref = np.load(out / "verification" / "source_outputs.npz")
    assert all(float(np.std(ref[k])) > 0 for k in ref.files)  # random weights still give informative outputs


def test_bad_darknet_inputs(yolo, tmp_path):
    sample = yolo["yolov3-tiny"]
    out = tmp_path / "out"
    weights = (sample / "model.weights").read_bytes()
    short = tmp_path / "short.weights"
    short.write_bytes(weights[:-100])
    proc = cli("convert", "darknet", sample / "model.cfg", out, "--weights", short)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "short.weights: too short:" in last_line(proc) and "(25 missing)" in last_line(proc)
    long = tmp_path / "long.weights"
    long.write_bytes(weights + b"\0" * 40)
    proc = cli("convert", "darknet", sample / "model.cfg", out, "--weights", long)
    assert proc.returncode == 2 and "long.weights: too long: 10 floats left over" in last_line(proc)
    cfg = tmp_path / "odd.cfg"
    cfg.write_text((sample / "model.cfg").read_text().replace("[upsample]", "[teleport]"))
    proc = cli("convert", "darknet", cfg, out, "--weights", sample / "model.weights")
    assert proc.returncode == 2 and "odd.cfg: line" in last_line(proc)
    assert "unknown layer type [teleport]" in last_line(proc)
    proc = cli("convert", "darknet", sample / "model.cfg", out)
    assert proc.returncode == 2 and "needs --weights" in last_line(proc)
    assert not out.exists()
