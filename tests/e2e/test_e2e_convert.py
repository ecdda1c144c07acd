import hashlib
import json
import os

import numpy as np
import pytest

from clihelp import recorded_error_matches, cli, manifest

pytestmark = pytest.mark.e2e


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def check_common(out, src_file, route, engine):
    m = manifest(out)
    assert m["route"]["from"] == route[0] and m["route"]["to"] == route[1]
    assert (out / "model.tflite").read_bytes()[4:8] == b"TFL3"
    assert m["artifacts"]["model.tflite"] == sha256(out / "model.tflite")
    if src_file.is_file():
        assert m["input"]["sha256"][src_file.name] == sha256(src_file)
    for step in m["steps"]:
        info = engine.image(step["image"])
        assert info is not None and info["id"] == step["image_id"]
        assert step["versions"]["tensorflow"] == "2.15.1"
        assert step["seconds"] > 0
    v = m["verification"]
    assert v["passed"] is True and v["outputs"]
    for o in v["outputs"]:
        assert o["passed"] and o["max_rel_err"] <= v["tolerance"] and o["shape"] == o["result_shape"]
    # what the manifest claims can be recomputed from the kept verification arrays
    assert recorded_error_matches(out, v)
    assert os.stat(out / "model.tflite").st_uid == os.getuid()
    return m


@pytest.mark.parametrize("mode, tolerance", [("none", 1e-4), ("float16", 1e-2), ("dynamic", 5e-2), ("int8", 0.15)])
def test_keras_h5_to_tflite(samples, engine, tmp_path, mode, tolerance):
    src = samples[("keras", "cnn")]
    out = tmp_path / "out"
    args = ["convert", "keras", src / "model.h5", out, "--quantize", mode]
    if mode == "int8":
        args += ["--calibration", src / "calibration.npy"]
    proc = cli(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "verified" in proc.stdout
    m = check_common(out, src / "model.h5", ("keras", "tflite"), engine)
    assert m["verification"]["mode"] == mode and m["verification"]["tolerance"] == tolerance
    assert m["options"]["quantize"] == mode
    # the converter saved the Keras model the quick way (images/shared/keras_savedmodel.py), once: no report, no twin
    assert m["steps"][0]["info"]["keras_saves"] == {"quick": 1, "usual": 0}
    tensors = m["steps"][0]["info"]["tflite"]
    if mode == "int8":
        assert tensors["inputs"]["image"]["dtype"] == "int8" and tensors["inputs"]["image"]["scale"] > 0
        assert m["steps"][0]["info"]["calibration_samples"] == 32
    else:
        assert tensors["inputs"]["image"]["dtype"] == "float32"
    if mode in ("float16",):
        sizes = m["steps"][0]["info"]["size_bytes"]
        assert sizes > 0


def test_int8_with_float_interface_and_uint8_output(samples, engine, tmp_path):
    src = samples[("keras", "cnn")]
    out = tmp_path / "out"
    proc = cli("convert", "keras", src / "model.h5", out, "--quantize", "int8", "--calibration",
               src / "calibration.npy", "--inference_input_type", "float32", "--inference_output_type", "uint8")
    assert proc.returncode == 0, proc.stderr[-3000:]
    tensors = check_common(out, src / "model.h5", ("keras", "tflite"), engine)["steps"][0]["info"]["tflite"]
    assert tensors["inputs"]["image"]["dtype"] == "float32"
    assert tensors["outputs"]["probs"]["dtype"] == "uint8"


def test_keras_multi_input_multi_output(samples, engine, tmp_path):
    src = samples[("keras", "multi")]
    proc = cli("convert", "keras", src / "model.h5", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = check_common(tmp_path / "out", src / "model.h5", ("keras", "tflite"), engine)
    assert sorted(o["name"] for o in m["verification"]["outputs"]) == ["out_x", "out_y"]


def test_keras_saved_model_to_tflite(samples, engine, tmp_path):
    src = samples[("keras_saved_model", "cnn")] / "keras_saved_model"
    proc = cli("convert", "keras_saved_model", src, tmp_path / "out", "--quantize", "float16")
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = check_common(tmp_path / "out", src, ("keras_saved_model", "tflite"), engine)
    assert "saved_model.pb" in m["input"]["sha256"]


def test_tf_saved_model_to_tflite_with_signature_and_tags(samples, engine, tmp_path):
    src = samples[("tf_saved_model", "multi")] / "saved_model"
    proc = cli("convert", "tf_saved_model", src, tmp_path / "out", "--signature_name", "serving_default",
               "--saved_model_tags", "serve")
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = check_common(tmp_path / "out", src, ("tf_saved_model", "tflite"), engine)
    assert m["options"] == {"signature_name": "serving_default", "saved_model_tags": "serve"}
    assert m["verification"]["pairing"] == "name"


def test_tf_saved_model_int8_with_npz_calibration(samples, engine, tmp_path):
    src = samples[("tf_saved_model", "multi")]
    proc = cli("convert", "tf_saved_model", src / "saved_model", tmp_path / "out", "--quantize", "int8",
               "--calibration", src / "calibration.npz")
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_common(tmp_path / "out", src / "saved_model", ("tf_saved_model", "tflite"), engine)


def test_tf_frozen_model_to_tflite(samples, engine, tmp_path):
    src = samples[("tf_frozen_model", "multi")]
    info = json.loads((src / "sample.json").read_text())
    proc = cli("convert", "tf_frozen_model", src / "frozen_model.pb", tmp_path / "out",
               "--input_arrays", ",".join(info["input_arrays"]), "--output_arrays", ",".join(info["output_arrays"]),
               "--input_shapes", info["input_shapes"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = check_common(tmp_path / "out", src / "frozen_model.pb", ("tf_frozen_model", "tflite"), engine)
    assert m["options"]["input_shapes"] == "1,8:1,4"


def test_sample_input_is_used_first_for_verification(samples, tmp_path):
    src = samples[("keras", "cnn")]
    x = np.random.default_rng(5).uniform(0, 1, (5, 32, 32, 3)).astype("float32")  # 5 samples on axis 0
    np.save(tmp_path / "x.npy", x)
    proc = cli("convert", "keras", src / "model.h5", tmp_path / "out", "--sample_input", tmp_path / "x.npy",
               "--verify_samples", "3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    v = manifest(tmp_path / "out")["verification"]
    dists = v["inputs"]["distributions"]
    assert dists[0] == {"name": "sample_input", "kind": "given", "file": "x.npy", "start": 0, "count": 5, "judged": True}
    assert [(d["name"], d["count"]) for d in dists[1:]] == [("uniform", 3), ("normal", 3), ("image", 3)]
    assert v["inputs"]["samples"] == 14 and "14 inputs (sample_input 5, uniform 3" in proc.stdout
    kept = np.load(tmp_path / "out" / "verification" / "inputs.npz")["image"]
    assert kept.shape == (14, 1, 32, 32, 3)  # samples on axis 0, each with the model's batch axis
    np.testing.assert_array_equal(kept[:5, 0], x)
    assert set(v["outputs"][0]["by_distribution"]) == {"sample_input", "uniform", "normal", "image"}
