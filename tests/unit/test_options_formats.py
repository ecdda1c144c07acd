import pytest
from fakes import LAYERS_TOPOLOGY, SAVED_MODEL_PB

from orchestrator import formats, options, planner
from orchestrator.errors import InputError, UsageError

FROZEN = planner.plan("tf_frozen_model", "tflite")
KERAS = planner.plan("keras", "tflite")


def test_fire_tuples_become_comma_lists():
    got = options.validate(FROZEN, {"input_arrays": ("a", "b"), "output_arrays": "y",
                                    "input_shapes": (1, 224, 224, 3)})
    assert got == {"input_arrays": "a,b", "output_arrays": "y", "input_shapes": "1,224,224,3"}


def test_several_input_shapes():
    got = options.validate(FROZEN, {"input_arrays": "a,b", "output_arrays": "y", "input_shapes": "1,8:1,4"})
    assert got["input_shapes"] == "1,8:1,4"


@pytest.mark.parametrize("bad", ["1,x,3", "a", "1;2"])
def test_bad_shapes_are_rejected(bad):
    with pytest.raises(UsageError, match="--input_shapes"):
        options.validate(FROZEN, {"input_arrays": "a", "output_arrays": "y", "input_shapes": bad})


def test_unknown_option_names_the_valid_ones():
    with pytest.raises(UsageError, match=r"unknown option --bogus for keras -> tflite; options: --quantize"):
        options.validate(KERAS, {"bogus": 1})


def test_option_of_another_route_is_rejected():
    with pytest.raises(UsageError, match="unknown option --input_arrays"):
        options.validate(KERAS, {"input_arrays": "x"})


def test_hyphenated_names_are_accepted():
    assert options.validate(KERAS, {"inference-input-type": "uint8"}) == {"inference_input_type": "uint8"}


def test_int8_needs_calibration():
    with pytest.raises(UsageError, match="--quantize int8 needs --calibration"):
        options.validate(KERAS, {"quantize": "int8"})


def test_bad_choice():
    with pytest.raises(UsageError, match="--quantize must be one of"):
        options.validate(KERAS, {"quantize": "int4"})


def test_frozen_graph_needs_arrays():
    with pytest.raises(UsageError, match="needs --input_arrays"):
        options.validate(FROZEN, {})


def test_path_option_must_exist(tmp_path):
    with pytest.raises(InputError, match="nope.npy: no such file"):
        options.validate(KERAS, {"quantize": "int8", "calibration": str(tmp_path / "nope.npy")})


def test_path_option_is_mounted_by_container_path(tmp_path):
    cal = tmp_path / "cal.npy"
    cal.write_bytes(b"x")
    vals = options.validate(KERAS, {"quantize": "int8", "calibration": str(cal)})
    assert options.as_args(KERAS[0].options, vals, {"calibration": "/in/opt/calibration/cal.npy"}) == [
        "--quantize", "int8", "--calibration", "/in/opt/calibration/cal.npy"]


def test_bool_option_values():
    assert options.validate(KERAS, {"allow_custom_ops": "true"})["allow_custom_ops"] is True
    with pytest.raises(UsageError):
        options.validate(KERAS, {"allow_custom_ops": "maybe"})


# -- formats ----------------------------------------------------------------------------------
def test_missing_input(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        formats.check_input("keras", tmp_path / "none.h5")


def test_corrupt_h5_is_rejected_on_the_host(tmp_path):
    p = tmp_path / "bad.h5"
    p.write_bytes(b"not hdf5 at all" * 10)
    with pytest.raises(InputError, match=r"bad.h5: is not a Keras model"):
        formats.check_input("keras", p)


def test_hdf5_signature_accepted(keras_file):
    assert formats.check_input("keras", keras_file) == keras_file.resolve()


def test_tflite_given_as_keras_names_the_right_format(tmp_path):
    p = tmp_path / "m.tflite"
    p.write_bytes(b"\x1c\x00\x00\x00TFL3" + b"\x00" * 20)
    with pytest.raises(InputError, match="FROM should be tflite"):
        formats.check_input("keras", p)


def test_saved_model_folder_checks(tmp_path):
    with pytest.raises(InputError, match="no saved_model.pb"):
        formats.check_input("tf_saved_model", tmp_path)
    (tmp_path / "saved_model.pb").write_bytes(b"x")
    with pytest.raises(InputError, match="saved_model.pb: is not a SavedModel: truncated or corrupt"):
        formats.check_input("tf_saved_model", tmp_path)
    (tmp_path / "saved_model.pb").write_bytes(SAVED_MODEL_PB)
    assert formats.check_input("tf_saved_model", tmp_path)
    with pytest.raises(InputError, match="keras_metadata.pb"):
        formats.check_input("keras_saved_model", tmp_path)


def test_file_format_given_a_folder(tmp_path):
    with pytest.raises(InputError, match="is a folder"):
        formats.check_input("keras", tmp_path)


def test_empty_file(tmp_path):
    p = tmp_path / "g.pb"
    p.write_bytes(b"")
    with pytest.raises(InputError, match="is empty"):
        formats.check_input("tf_frozen_model", p)


def test_tfjs_malformed_json(tmp_path):
    p = tmp_path / "model.json"
    p.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        formats.check_input("tfjs_layers_model", p)


def _tfjs(tmp_path, paths=("group1-shard1of1.bin",), size=16, weights=None):
    import json

    weights = weights or [{"name": "w", "shape": [2, 2], "dtype": "float32"}]
    (tmp_path / "model.json").write_text(json.dumps({
        "format": "layers-model", "modelTopology": LAYERS_TOPOLOGY,
        "weightsManifest": [{"paths": list(paths), "weights": weights}]}))
    for p in paths:
        if "/" not in p:
            (tmp_path / p).write_bytes(b"\0" * size)
    return tmp_path / "model.json"


def test_tfjs_manifest_ok(tmp_path):
    assert formats.check_input("tfjs_layers_model", _tfjs(tmp_path))


def test_tfjs_shard_outside_folder_rejected_before_any_read(tmp_path):
    with pytest.raises(InputError, match="'../secret.bin' points outside the model folder"):
        formats.check_input("tfjs_layers_model", _tfjs(tmp_path, paths=("../secret.bin",)))


def test_tfjs_missing_and_short_shards(tmp_path):
    path = _tfjs(tmp_path, size=12)
    with pytest.raises(InputError, match="hold 12 bytes but the manifest declares 16"):
        formats.check_input("tfjs_layers_model", path)
    (tmp_path / "group1-shard1of1.bin").unlink()
    with pytest.raises(InputError, match="weight shard 'group1-shard1of1.bin' is missing"):
        formats.check_input("tfjs_layers_model", path)


def test_tfjs_quantized_weights_count_their_stored_bytes(tmp_path):
    w = [{"name": "w", "shape": [4], "dtype": "float32", "quantization": {"dtype": "uint8", "min": 0, "scale": 1}}]
    assert formats.check_input("tfjs_layers_model", _tfjs(tmp_path, size=4, weights=w))


def test_tfjs_graph_model_given_as_layers(tmp_path):
    import json

    p = _tfjs(tmp_path)
    doc = json.loads(p.read_text())
    doc["format"] = "graph-model"
    p.write_text(json.dumps(doc))
    with pytest.raises(InputError, match="is a TensorFlow.js graph-model, not a layers-model"):
        formats.check_input("tfjs_layers_model", p)


def test_deprecated_quantization_bytes_maps_to_the_new_flag(capsys):
    chain = planner.plan("keras", "tfjs_layers_model")
    assert options.validate(chain, {"quantization_bytes": 1}) == {"quantize_uint8": True}
    assert "deprecated" in capsys.readouterr().err


def test_bare_and_listed_quantize_flags():
    chain = planner.plan("keras", "tfjs_layers_model")
    assert options.validate(chain, {"quantize_float16": True}) == {"quantize_float16": True}
    got = options.validate(chain, {"quantize_uint8": ("conv*", "dense_1")})
    assert got == {"quantize_uint8": "conv*,dense_1"}
    assert options.as_args(chain[0].options, got, {}) == ["--quantize_uint8", "conv*,dense_1"]


def test_metadata_files_are_checked_and_mounted(tmp_path):
    chain = planner.plan("keras", "tfjs_layers_model")
    (tmp_path / "labels.json").write_text('{"labels": ["a"]}')
    got = options.validate(chain, {"metadata": f"labels:{tmp_path / 'labels.json'}"})
    assert got["metadata"] == (("labels", (tmp_path / "labels.json").resolve()),)
    args = options.as_args(["metadata"], got, {("metadata", 0): "/in/opt/metadata/0/labels.json"})
    assert args == ["--metadata", "labels:/in/opt/metadata/0/labels.json"]
    with pytest.raises(UsageError, match="NAME:FILE.json"):
        options.validate(chain, {"metadata": "labels"})
    with pytest.raises(InputError, match="nope.json: no such file"):
        options.validate(chain, {"metadata": f"x:{tmp_path / 'nope.json'}"})
