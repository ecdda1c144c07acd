"""Who wrote a Keras file, read on the host (h5py attributes, .keras metadata.json), and the version ranges
stacks declare."""

import json
import zipfile

import h5py
import pytest

from fakes import LAYERS_TOPOLOGY, field

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
    return h5(path, keras_version=version, backend="tensorflow", model_config=json.dumps(
        {"class_name": "Sequential", "config": {"layers": [{"class_name": "InputLayer",
                                                            "config": {"batch_input_shape": [None, 4]}}]}}))


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
        pipeline.plan_job("keras", path, to="keras_saved_model")
    assert "no route from keras to keras_saved_model for a file written by Keras 3.15.1" in str(err.value)
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


# -- SavedModels: the TensorFlow version in saved_model.pb's MetaInfoDef ----------------------------------------
def saved_model_dir(path, version=None, extra=b""):
    """A saved_model.pb as TF writes it: schema version (varint field 1), then a MetaGraphDef whose MetaInfoDef
    holds a stripped op list and tags before tensorflow_version (field 5)."""
    info = field(1, b"") + field(2, b"\x0a\x05Const") + field(4, b"serve") + extra
    if version is not None:
        info += field(5, version.encode()) + field(6, b"v2.21.0-rc1-g123")
    path.mkdir()
    node = field(1, b"x") + field(2, b"Const")
    (path / "saved_model.pb").write_bytes(b"\x08\x01" + field(2, field(1, info) + field(2, field(1, node))))
    return path


def test_a_saved_model_names_the_tensorflow_that_wrote_it(tmp_path):
    p = producers.saved_model(saved_model_dir(tmp_path / "sm", "2.21.0", extra=b"\x38\x01"))  # a varint field too
    assert (p.library, p.version, p.release, p.describe()) == (
        "tensorflow", "2.21.0", (2, 21), "TensorFlow 2.21.0 (container saved_model)")
    text = tmp_path / "txt"
    text.mkdir()
    (text / "saved_model.pbtxt").write_text('meta_graphs {\n meta_info_def {\n  tensorflow_version: "1.15.0"\n }\n}\n')
    assert producers.saved_model(text).version == "1.15.0"
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "saved_model.pb").write_bytes(b"\x0a\xff\xff\xff\xff\x0f")  # runs past its end
    assert producers.saved_model(tmp_path / "bad") is None
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "saved_model.pb").write_bytes(b"")
    assert producers.saved_model(tmp_path / "empty") is None


@pytest.mark.parametrize("fmt", ["tf_saved_model", "tf_hub", "keras_saved_model"])
@pytest.mark.parametrize("version, stack", [("2.15.1", "tf2"), ("1.15.0", "tf2"), ("2.21.0", "keras3"),
                                            ("2.16.2", "keras3")])
def test_a_saved_model_converts_in_the_stack_of_its_tensorflow(tmp_path, fmt, version, stack):
    path = saved_model_dir(tmp_path / "sm", version)
    (path / "keras_metadata.pb").write_bytes(b"")
    job = pipeline.plan_job(fmt, path, "tflite")
    assert [s.stack for s in job.chain] == [stack]
    assert job.verification.check.reference.stack == stack
    assert job.producer.version == version


def test_newer_saved_models_reach_tfjs_through_tf2s_converter_and_verify_where_they_are_read(tmp_path):
    job = pipeline.plan_job("tf_saved_model", saved_model_dir(tmp_path / "sm", "2.21.0"), "tfjs_graph_model")
    assert [(s.name, s.stack) for s in job.chain] == [("tf_saved_model_to_tfjs_graph", "tf2")]
    check = job.verification.check
    assert (check.reference.stack, check.result.stack) == ("keras3", "tfjs")
    text = planner.describe_plan(job.chain, job.values, job.producer)
    assert "written by TensorFlow 2.21.0" in text and "newer than tf2 reads: tensorflowjs_converter" in text
    # a file newer than every stack: one line naming its version and what the stacks read
    with pytest.raises(InputError, match=r"sm2: written by TensorFlow 2.22.0 .*which no stack reads \(tensorflow "
                                         r"files: keras3 2.16-2.21; tf2 1.0-2.15\)"):
        pipeline.plan_job("tf_saved_model", saved_model_dir(tmp_path / "sm2", "2.22.0"), "tfjs_graph_model")


def test_a_saved_model_recording_no_version_goes_to_the_newest_stack(tmp_path):
    job = pipeline.plan_job("tf_saved_model", saved_model_dir(tmp_path / "sm"), "tflite")
    assert [s.stack for s in job.chain] == ["keras3"]
    assert job.producer.to_json()["assumed"].startswith("the file records no version")


# -- a model given as an option (--base_model) that the step taking it cannot read ----------------------------
def tfjs_head(folder):
    folder.mkdir()
    (folder / "model.json").write_text(json.dumps({"format": "layers-model", "modelTopology": LAYERS_TOPOLOGY,
                                                   "weightsManifest": []}))
    return folder / "model.json"


@pytest.mark.parametrize("base, prelude", [("3.15.1", ["keras3_to_keras2"]), ("2.21.0", ["keras3_to_keras2"]),
                                           ("2.15.0", None)])
def test_a_base_model_tf2_cannot_read_is_translated_into_keras2_first(tmp_path, base, prelude):
    path = keras_h5(tmp_path / "base.h5", base)
    job = pipeline.plan_job("tfjs_layers_model", tfjs_head(tmp_path / "head"), "tflite",
                            {"base_model": str(path), "base_layer": "features"})
    assert [s.name for s in job.chain] == ["tfjs_layers_to_keras", "keras_to_tflite"]
    if prelude is None:
        assert job.preludes == [] and job.stacks()[0] == "tf2"
        return
    (found,) = job.preludes
    assert (found.option, [s.name for s in found.chain], found.producer.version) == ("base_model", prelude, base)
    assert job.stacks()[:2] == ["keras3", "tf2"]  # the translation's stack is ready before the chain runs
    assert job.verification.check.reference_format == "keras"  # still the merged model, as with a Keras 2 base


def test_a_base_model_no_stack_reads_is_refused_naming_it(tmp_path):
    path = keras_h5(tmp_path / "base.h5", "3.16.0")
    with pytest.raises(InputError, match=r"base.h5: written by Keras 3.16.0"):
        pipeline.plan_job("tfjs_layers_model", tfjs_head(tmp_path / "head"), "tflite",
                          {"base_model": str(path), "base_layer": "features"})
