from pathlib import Path

import pytest

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
