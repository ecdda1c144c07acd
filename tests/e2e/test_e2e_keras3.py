"""Keras files saved by today's frameworks (Keras 3 .keras and .h5, tf_keras 2.21 .h5 and SavedModels, TF 2.21
SavedModels), made inside the keras3 stack, routed there by the version that saved them, converted by TF 2.21 (or
translated into Keras 2 for TF.js layers models) and verified against the file run where it is read."""

import json

import pytest

from clihelp import make_samples, cli, last_line, manifest
from orchestrator import images
from orchestrator.engine import ContainerSpec

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def new_keras(stack_images, tmp_path_factory):
    return make_samples(tmp_path_factory.mktemp("keras3"), "keras", ("keras3", "tf-keras", "keras3-gaps"))


def converted(*args, stacks=("keras3",), verified_in=("keras3", "keras3", "keras3"), tf="2.21.0"):
    proc = cli("convert", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = manifest(args[2])
    assert [s["stack"] for s in m["steps"]] == list(stacks) and m["steps"][0]["versions"]["tensorflow"] == tf
    v = m["verification"]
    assert v["passed"] and [s["stack"] for s in v["steps"]] == list(verified_in)
    assert all(o["max_rel_err"] <= v["tolerance"] for o in v["outputs"])
    return m


def test_keras3_archive_to_tflite(new_keras, tmp_path):
    m = converted("keras", new_keras["keras3"] / "model.keras", tmp_path / "out")
    assert m["input"]["producer"]["saved_by"] == "Keras 3.15.1" and m["input"]["producer"]["container"] == "keras"
    assert m["steps"][0]["info"]["producer"]["loaded_with"] == "keras 3.15.1"
    assert m["verification"]["mode"] == "none"
    assert "keras_saves" not in m["steps"][0]["info"]  # the converter exports a Keras 3 model itself


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
    # a tf_keras model is saved the quick way inside the converter (images/shared/keras_savedmodel.py)
    assert m["steps"][0]["info"]["keras_saves"] == {"quick": 1, "usual": 0}


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


TFJS = ("keras3", "tfjs", "tf2")  # the Keras file in keras3, the TF.js model in the TF.js runtime, compared in tf2


def test_keras3_archive_to_a_tfjs_layers_model_through_keras2(new_keras, tmp_path):
    """The config translated into Keras 2's grammar and the weights copied (keras3), tf2's converter, TF.js runtime."""
    out = tmp_path / "out"
    m = converted("keras", new_keras["keras3"] / "model.keras", out, "--to", "tfjs_layers_model",
                  stacks=("keras3", "tf2"), verified_in=TFJS)
    assert m["route"]["steps"] == ["keras3_to_keras2", "keras2_to_tfjs_layers"]
    keras2 = m["steps"][0]["info"]["keras2"]
    assert keras2["weights_copied"] == 12 and "image.optional" in keras2["dropped_neutral_keys"]
    topology = json.loads((out / "model.json").read_text())["modelTopology"]["model_config"]
    first = topology["config"]["layers"][0]["config"]
    assert topology["class_name"] == "Functional" and first["batch_input_shape"] == [None, 32, 32, 3]
    assert "optional" not in first and "module" not in json.dumps(topology)
    assert (out / "model.h5").is_file()  # the Keras 2 file itself, for Keras 2 tools


def test_tf_keras_h5_to_a_tfjs_layers_model_with_uint8_weights(new_keras, tmp_path):
    m = converted("keras", new_keras["tf-keras"] / "model.h5", tmp_path / "out", "--to", "tfjs_layers_model",
                  "--quantize_uint8", stacks=("keras3", "tf2"), verified_in=TFJS)
    assert m["verification"]["mode"] == "weights_uint8" and m["steps"][1]["info"]["quantization"] == ["uint8"]


def test_keras3_sequential_runs_as_a_tfjs_sequential(new_keras, tmp_path):
    """TF.js Sequential models report no input or output names; the runner names them by their layers."""
    m = converted("keras", new_keras["keras3"] / "sequential.keras", tmp_path / "out", "--to", "tfjs_layers_model",
                  stacks=("keras3", "tf2"), verified_in=TFJS)
    assert [o["name"] for o in m["verification"]["outputs"]] == ["scores"]


@pytest.mark.parametrize("kind, name, to, args", [
    ("keras3", "model.keras", "tflite", ("--quantize", "int8")),
    ("keras3", "model.h5", "tflite", ()),
    ("tf-keras", "model.h5", "tflite", ()),
    ("keras3", "model.h5", "tfjs_layers_model", ()),
    ("keras3", "model.h5", "tfjs_graph_model", ()),
    ("tf-keras", "model.h5", "tflite", ("--quantize", "int8")),
    ("tf-keras", "model.h5", "tfjs_graph_model", ()),
])
def test_the_file_by_target_table(new_keras, tmp_path, kind, name, to, args):
    """The cells of the (Keras 3 .keras, Keras 3 .h5, tf_keras .h5) x (float, int8, layers, graph) table that the
    tests above leave. Keras 2.15 files: test_e2e_convert.py and test_e2e_tfjs.py."""
    calibration = ("--calibration", new_keras[kind] / "calibration.npy") if "int8" in args else ()
    m = converted("keras", new_keras[kind] / name, tmp_path / "out", "--to", to, *args, *calibration,
                  stacks=("keras3",) if to == "tflite" else ("keras3", "tf2"),
                  verified_in=("keras3",) * 3 if to == "tflite" else TFJS)
    assert m["input"]["producer"]["saved_by"] == ("Keras 3.15.1" if kind == "keras3" else "tf_keras 2.21.0")


def test_layers_a_tfjs_layers_model_cannot_hold_are_refused_by_name(new_keras, tmp_path):
    gaps = new_keras["keras3-gaps"]
    proc = cli("convert", "keras", gaps / "tfjs_gap.keras", tmp_path / "a", "--to", "tfjs_layers_model")
    assert proc.returncode == 2 and last_line(proc) == (
        f"orchestrator: error: {gaps / 'tfjs_gap.keras'}: the TF.js layers runtime (tfjs 4.22.0) has no layer class "
        "for 'group_norm' (GroupNormalization); convert it to tfjs_graph_model instead")
    proc = cli("convert", "keras", gaps / "keras3_only.keras", tmp_path / "b", "--to", "tfjs_layers_model")
    assert proc.returncode == 2 and "layer 'rms' uses layer RMSNormalization, which Keras 2 (and so the TF.js " \
        "layers runtime) does not have" in last_line(proc)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


LIST_LAYERS = ("const tf = require('@tensorflow/tfjs'); const m = tf.serialization.SerializationMap.getMap()"
               ".classNameMap; console.log(JSON.stringify({tfjs: tf.version.tfjs, layers: Object.keys(m).filter("
               "n => m[n][0].prototype instanceof tf.layers.Layer).sort()}));")


def test_the_tfjs_layer_table_is_the_runtimes(engine, stack_images):
    """images/keras3/steps/tfjs_layers.json (what the Keras 2 translation refuses by) lists what TF.js registers."""
    tfjs = images.get_stack("tfjs")
    result = engine.run(ContainerSpec(image=tfjs.tag(), command=["node", "-e", LIST_LAYERS],
                                      environment=dict(tfjs.environment)))
    assert result.exit_code == 0, result.stderr[-2000:]
    live = json.loads(next(ln for ln in result.stdout.splitlines() if ln.startswith("{")))
    table = json.loads((images.get_stack("keras3").path / "steps" / "tfjs_layers.json").read_text())
    assert (table["tfjs"], table["layers"]) == (live["tfjs"], live["layers"])


def test_tf_2_21_saved_model_to_int8_in_keras3(new_keras, tmp_path):
    src = new_keras["tf-keras"]
    m = converted("tf_saved_model", src / "saved_model", tmp_path / "out", "--quantize", "int8", "--calibration",
                  src / "calibration.npy")
    assert m["input"]["producer"]["saved_by"] == "TensorFlow 2.21.0" and m["verification"]["mode"] == "int8"


def test_tf_2_21_saved_model_to_tfjs_graph_verified_against_tf_2_21(new_keras, tmp_path):
    m = converted("tf_saved_model", new_keras["tf-keras"] / "saved_model", tmp_path / "out", "--to",
                  "tfjs_graph_model", stacks=("tf2",), verified_in=TFJS, tf="2.15.1")
    assert m["verification"]["steps"][0]["versions"]["tensorflow"] == "2.21.0"
    proc = cli("plan", "tf_saved_model", "--input", new_keras["tf-keras"] / "saved_model", "--to", "tfjs_graph_model")
    assert "written by TensorFlow 2.21.0" in proc.stdout and "newer than tf2 reads" in proc.stdout


def test_tf_keras_saved_model_to_tflite_in_keras3(new_keras, tmp_path):
    m = converted("keras_saved_model", new_keras["tf-keras"] / "keras_saved_model", tmp_path / "out")
    assert m["steps"][0]["info"]["producer"]["library"] == "tf_keras"


def test_a_keras3_base_model_is_translated_before_the_merge(head_and_base, new_keras, tmp_path):
    """--base_model given as a Keras 3 .keras: keras3 writes its Keras 2 form, tf2 merges the TF.js head under it."""
    _, head = head_and_base
    m = converted("tfjs_layers_model", head, tmp_path / "out", "--base_model", new_keras["keras3"] / "model.keras",
                  "--base_layer", "features", stacks=("keras3", "tf2", "tf2"), verified_in=("tf2",) * 3)
    first, merge = m["steps"][0], m["steps"][1]
    assert (first["name"], first["for_option"], first["producer"]["saved_by"]) == (
        "keras3_to_keras2", "base_model", "Keras 3.15.1")
    assert merge["info"]["merged"]["feature_shape"] == [16] and m["options"]["base_model"].endswith("model.keras")
    proc = cli("plan", "tfjs_layers_model", "--input", head, "--base_model", new_keras["keras3"] / "model.keras",
               "--base_layer", "features")
    assert "--base_model: written by Keras 3.15.1 (container keras), which the step taking it cannot read: first " \
        "keras3_to_keras2 in stack keras3" in proc.stdout


@pytest.fixture(scope="session")
def other_backends(stack_images, tmp_path_factory):
    """The CNN saved by Keras 3 with the PyTorch backend (torch stack) and the JAX backend (litert_torch stack)."""
    return make_samples(tmp_path_factory.mktemp("keras3-backends"), "keras", ("keras3-torch", "keras3-jax"))


@pytest.mark.parametrize("kind, backend", [("keras3-torch", "torch"), ("keras3-jax", "jax")])
def test_keras3_files_from_other_backends_load_with_tensorflows(other_backends, tmp_path, kind, backend):
    """Written where that backend is and TensorFlow is not, read in keras3 with the TensorFlow backend."""
    m = converted("keras", other_backends[kind] / "model.h5", tmp_path / "a")
    assert m["input"]["producer"]["backend"] == backend
    assert m["steps"][0]["info"]["producer"]["loaded_backend"] == "tensorflow"
    m = converted("keras", other_backends[kind] / "model.keras", tmp_path / "b", "--to", "tfjs_layers_model",
                  stacks=("keras3", "tf2"), verified_in=TFJS)
    assert m["steps"][0]["info"]["keras2"]["self_check_max_error"] <= 1e-4
