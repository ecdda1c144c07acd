"""FROM detection (orchestrator/detect.py): each format's sniff, one match, several, none."""

import io
import json
import tarfile
import zipfile

import pytest

from fakes import KERAS_H5
from orchestrator import cli, formats
from orchestrator.errors import InputError


def zipped(path, members):
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def saved_model(folder, keras=False):
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(b"\x08\x01")
    if keras:
        (folder / "keras_metadata.pb").write_bytes(b"\x0a\x00")
    return folder


def ssd_tarball(path):
    with tarfile.open(path, "w:gz") as tar:
        data = b"model {}\n"
        info = tarfile.TarInfo("ssd_model/pipeline.config")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


MAKERS = {
    "keras": lambda d: (d / "model.h5").write_bytes(KERAS_H5) and d / "model.h5",
    "keras-archive": lambda d: zipped(d / "model.keras", {"config.json": "{}", "model.weights.h5": b"x",
                                                          "metadata.json": "{}"}),
    "keras_saved_model": lambda d: saved_model(d / "ksm", keras=True),
    "tf_saved_model": lambda d: saved_model(d / "sm"),
    "tf_frozen_model": lambda d: (d / "frozen.pb").write_bytes(b"\x0a\x05\x0a\x01x\x12\x00") and d / "frozen.pb",
    "tfjs_layers_model": lambda d: (d / "model.json").write_text(json.dumps(
        {"format": "layers-model", "modelTopology": {"model_config": {}}})) and d / "model.json",
    "tfjs_graph_model": lambda d: (d / "model.json").write_text(json.dumps(
        {"modelTopology": {"node": []}})) and d / "model.json",
    "tflite": lambda d: (d / "m.tflite").write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(24)) and d / "m.tflite",
    "onnx": lambda d: (d / "m.onnx").write_bytes(b"\x08\x07\x12\x04test") and d / "m.onnx",
    "pytorch": lambda d: zipped(d / "m.pt2", {"m/archive_format": "pt2", "m/models/model.json": "{}"}),
    "pytorch-script": lambda d: zipped(d / "m.pt", {"m/data.pkl": b"\x80", "m/constants.pkl": b"\x80"}),
    "darknet": lambda d: (d / "yolo.cfg").write_text("# tiny\n[net]\nwidth=96\n") and d / "yolo.cfg",
    "ssd": lambda d: (d / "ssd").mkdir() or (d / "ssd" / "pipeline.config").write_text("model {}") and d / "ssd",
    "ssd-tarball": lambda d: ssd_tarball(d / "ssd.tar.gz"),
}


@pytest.mark.parametrize("case", sorted(MAKERS))
def test_each_format_is_detected_as_itself_only(tmp_path, case):
    path = MAKERS[case](tmp_path)
    name, seen = formats.detect_format(path)
    assert name == case.split("-")[0] and seen


def test_jax_code_reference(tmp_path):
    (tmp_path / "module.py").write_text("def build():\n    pass\n")
    assert formats.detect_format(f"{tmp_path / 'module.py'}:build")[0] == "jax"


def test_unknown_missing_and_url(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="notes.txt: is no model format this tool recognises"):
        formats.detect_format(tmp_path / "notes.txt")
    with pytest.raises(InputError, match="no such file or folder"):
        formats.detect_format(tmp_path / "absent.h5")
    with pytest.raises(InputError, match="is a URL"):
        formats.detect_format("https://example.invalid/m.h5")


def test_an_ambiguous_input_names_the_candidates(tmp_path):
    # a model-zoo folder that is also a SavedModel: both formats could read it
    folder = saved_model(tmp_path / "both")
    (folder / "pipeline.config").write_text("model {}")
    with pytest.raises(InputError, match=r"could be tf_saved_model \(.*\) or ssd \(.*\); name the format"):
        formats.detect_format(folder)


def test_saved_model_pb_inside_its_folder_is_not_a_frozen_graph(tmp_path):
    folder = saved_model(tmp_path / "sm")
    with pytest.raises(InputError, match="is the graph of a SavedModel; give the SavedModel's folder"):
        formats.detect_format(folder / "saved_model.pb")


def test_from_is_optional_on_the_command_line(tmp_path):
    assert cli._from_and(["keras", "m.h5", "out"], ("INPUT", "OUTPUT_DIR"), "convert") == ("keras", ["m.h5", "out"])
    assert cli._from_and(["m.h5", "out"], ("INPUT", "OUTPUT_DIR"), "convert") == (None, ["m.h5", "out"])
    with pytest.raises(Exception, match="OUTPUT_DIR is missing after FROM keras"):
        cli._from_and(["keras", "m.h5"], ("INPUT", "OUTPUT_DIR"), "convert")
    with pytest.raises(Exception, match="unknown format 'kerass'"):
        cli._from_and(["kerass", "m.h5", "out"], ("INPUT", "OUTPUT_DIR"), "convert")
    with pytest.raises(Exception, match=r"usage: orchestrator convert \[FROM\] INPUT OUTPUT_DIR \(1 given\)"):
        cli._from_and(["m.h5"], ("INPUT", "OUTPUT_DIR"), "convert")
