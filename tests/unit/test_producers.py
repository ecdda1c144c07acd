"""Who wrote a Keras file, read on the host (h5py attributes, .keras metadata.json), and the version ranges
stacks declare."""

import json
import zipfile

import h5py
import pytest

from orchestrator import producers


def h5(path, **attrs):
    with h5py.File(path, "w") as f:
        for key, value in attrs.items():
            f.attrs[key] = value.encode()
        f.create_group("model_weights")
    return path


def keras_zip(path, meta):
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("metadata.json", json.dumps(meta))
        z.writestr("config.json", "{}")
    return path


def test_h5_attributes_name_the_producer(tmp_path):
    p = producers.keras(h5(tmp_path / "m.h5", keras_version="2.21.0", backend="tensorflow",
                           model_config='{"class_name": "Sequential"}'))
    assert (p.library, p.version, p.release) == ("keras", "2.21.0", (2, 21))
    assert p.details == {"container": "h5", "backend": "tensorflow"}
    assert p.describe() == "tf_keras 2.21.0 (container h5, backend tensorflow)"
    assert producers.keras(h5(tmp_path / "w.h5")) is None  # weights only: the file does not say


def test_keras_archive_metadata_names_the_producer(tmp_path):
    p = producers.keras(keras_zip(tmp_path / "m.keras", {"keras_version": "3.15.1", "date_saved": "x"}))
    assert (p.version, p.details["container"], p.describe()) == ("3.15.1", "keras", "Keras 3.15.1 (container keras)")
    assert producers.keras(keras_zip(tmp_path / "n.keras", {"date_saved": "x"})) is None


def test_unreadable_files_say_nothing_here(tmp_path):
    """The stack that loads them names the file and the cause (an e2e test checks a truncated H5)."""
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"PK\x03\x04" + bytes(40))
    assert producers.keras(bad) is None
    truncated = tmp_path / "t.h5"
    truncated.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
    assert producers.keras(truncated) is None


@pytest.mark.parametrize("version, text, inside", [
    ("2.15.0", "2.0-2.15", True), ("2.16.0", "2.0-2.15", False), ("3.15.1", "2.16-3.15", True),
    ("3.16.0", "2.16-3.15", False), ("2.21.0", "2.16-3.15", True), ("1.2.2", "2.0-2.15", False),
])
def test_version_ranges_are_major_minor_inclusive(version, text, inside):
    assert producers.in_range(producers.Producer("keras", version), text) is inside


# -- routing by producer ---------------------------------------------------------------------------------------
from orchestrator import formats, pipeline, planner, verify  # noqa: E402
from orchestrator.errors import InputError, UsageError  # noqa: E402


def keras_h5(path, version):
    return h5(path, keras_version=version, backend="tensorflow")


@pytest.mark.parametrize("version, stack", [("2.15.0", "tf2"), ("2.21.0", "keras3"), ("3.15.1", "keras3"),
                                            ("2.4.0", "tf2")])
def test_a_keras_file_goes_to_the_stack_that_reads_its_version(tmp_path, version, stack):
    producer = formats.get("keras").adapter.producer(keras_h5(tmp_path / "m.h5", version))
    chain = planner.plan("keras", "tflite", producer=producer)
    assert [s.stack for s in chain] == [stack]
    check = verify.check_for(chain, {}, producer)
    assert (check.reference.stack, check.result.stack, check.compare_stack) == (stack, stack, stack)
    text = planner.describe_plan(chain, {}, producer)
    assert f"read by stack {stack}" in text and version in text


def test_without_a_file_the_default_stack_plans():
    assert [s.stack for s in planner.plan("keras", "tflite")] == ["tf2"]
    keras2 = producers.Producer("keras", "2.15.0")
    assert [s.stack for s in planner.plan("keras", "tfjs_layers_model", producer=keras2)] == ["tf2"]


def test_a_file_no_stack_reads_is_refused_naming_both_versions(tmp_path):
    path = keras_h5(tmp_path / "future.h5", "3.16.0")
    with pytest.raises(InputError, match=r"future.h5: written by Keras 3.16.0 .*which no stack reads "
                                         r"\(keras files: keras3 2.16-3.15; tf2 2.0-2.15\)"):
        pipeline.plan_job("keras", path)


def test_routes_where_the_file_has_no_stack_name_its_producer(tmp_path):
    path = keras_zip(tmp_path / "m.keras", {"keras_version": "3.15.1"})
    with pytest.raises(UsageError) as err:
        pipeline.plan_job("keras", path, to="tfjs_layers_model")
    assert "no route from keras to tfjs_layers_model for a file written by Keras 3.15.1" in str(err.value)
    assert err.value.exit_code == 2
    assert any(line.startswith("keras -> tflite  [keras3]  for keras 2.16-3.15 files")
               for line in planner.describe_routes())


def test_keras3_files_reach_tfjs_graph_models_through_a_saved_model():
    keras3 = producers.Producer("keras", "3.15.1")
    chain = planner.plan("keras", "tfjs_graph_model", producer=keras3)
    assert [(s.name, s.stack) for s in chain] == [("keras3_to_tf_saved_model", "keras3"),
                                                 ("tf_saved_model_to_tfjs_graph", "tf2")]
    check = verify.check_for(chain, {}, keras3)
    assert (check.reference.stack, check.result.stack, check.compare_stack) == ("keras3", "tfjs", "tf2")
    saved = verify.check_for(planner.plan("keras", "tf_saved_model", producer=keras3), {}, keras3)
    assert saved.result.stack == "keras3"  # the SavedModel runs where TF 2.21 wrote it
