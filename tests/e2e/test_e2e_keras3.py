"""Keras files saved by today's frameworks (Keras 3 .keras and .h5, tf_keras 2.21 .h5), made inside the keras3
stack, routed there by the version that saved them, converted by TF 2.21 and verified in that stack (LiteRT)."""

import pytest

from clihelp import make_samples, cli, last_line, manifest

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def new_keras(stack_images, tmp_path_factory):
    return make_samples(tmp_path_factory.mktemp("keras3"), "keras", ("keras3", "tf-keras"))


def converted(*args, stacks=("keras3",), verified_in=("keras3", "keras3", "keras3")):
    proc = cli("convert", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = manifest(args[2])
    assert [s["stack"] for s in m["steps"]] == list(stacks) and m["steps"][0]["versions"]["tensorflow"] == "2.21.0"
    v = m["verification"]
    assert v["passed"] and [s["stack"] for s in v["steps"]] == list(verified_in)
    assert all(o["max_rel_err"] <= v["tolerance"] for o in v["outputs"])
    return m


def test_keras3_archive_to_tflite(new_keras, tmp_path):
    m = converted("keras", new_keras["keras3"] / "model.keras", tmp_path / "out")
    assert m["input"]["producer"]["saved_by"] == "Keras 3.15.1" and m["input"]["producer"]["container"] == "keras"
    assert m["steps"][0]["info"]["producer"]["loaded_with"] == "keras 3.15.1"
    assert m["verification"]["mode"] == "none"


def test_keras3_h5_to_int8(new_keras, tmp_path):
    src = new_keras["keras3"]
    m = converted("keras", src / "model.h5", tmp_path / "out", "--quantize", "int8", "--calibration",
                  src / "calibration.npy")
    assert m["input"]["producer"]["container"] == "h5" and m["verification"]["mode"] == "int8"
    assert m["steps"][0]["info"]["calibration_samples"] == 16
    assert m["steps"][0]["info"]["tflite"]["inputs"]["image"]["dtype"] == "int8"


def test_tf_keras_h5_to_dynamic_range(new_keras, tmp_path):
    m = converted("keras", new_keras["tf-keras"] / "model.h5", tmp_path / "out", "--quantize", "dynamic")
    assert m["input"]["producer"]["saved_by"] == "tf_keras 2.21.0"
    assert m["steps"][0]["info"]["producer"]["loaded_with"] == "tf_keras 2.21.0"


def test_keras3_to_tfjs_graph_model_through_its_saved_model(new_keras, tmp_path):
    """Keras 3's model.export in keras3, then tf2's TF.js converter; the result runs in the TF.js runtime."""
    m = converted("keras", new_keras["keras3"] / "model.keras", tmp_path / "out", "--to", "tfjs_graph_model",
                  stacks=("keras3", "tf2"), verified_in=("keras3", "tfjs", "tf2"))
    assert m["route"]["steps"] == ["keras3_to_tf_saved_model", "tf_saved_model_to_tfjs_graph"]
    assert (tmp_path / "out" / "model.json").is_file() and m["verification"]["steps"][1]["versions"]["tfjs"]


def test_tf_keras_h5_to_a_saved_model(new_keras, tmp_path):
    m = converted("keras", new_keras["tf-keras"] / "model.h5", tmp_path / "out", "--to", "tf_saved_model")
    assert (tmp_path / "out" / "saved_model" / "saved_model.pb").is_file()
    assert m["steps"][0]["info"]["producer"]["library"] == "tf_keras"


def test_plan_names_the_stack_and_why(new_keras):
    proc = cli("plan", "keras", "--input", new_keras["tf-keras"] / "model.h5")
    assert proc.returncode == 0
    assert "written by tf_keras 2.21.0 (container h5, backend tensorflow); read by stack keras3" in proc.stdout


def test_routes_keras3_cannot_take_yet_say_so(new_keras, tmp_path):
    proc = cli("convert", "keras", new_keras["keras3"] / "model.keras", tmp_path / "out", "--to",
               "tfjs_layers_model")
    assert proc.returncode == 2 and "for a file written by Keras 3.15.1" in last_line(proc)
    assert not (tmp_path / "out").exists()
