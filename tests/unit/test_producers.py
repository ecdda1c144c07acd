"""Who wrote a Keras file, read on the host (h5py attributes, .keras metadata.json), and the version ranges
stacks declare."""

import json
import zipfile

import h5py
import pytest

from orchestrator import producers
from orchestrator.errors import InputError


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


def test_unreadable_files_name_the_file(tmp_path):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"PK\x03\x04" + bytes(40))
    with pytest.raises(InputError, match="bad.keras: is not a readable"):
        producers.keras(bad)


@pytest.mark.parametrize("version, text, inside", [
    ("2.15.0", "2.0-2.15", True), ("2.16.0", "2.0-2.15", False), ("3.15.1", "2.16-3.15", True),
    ("3.16.0", "2.16-3.15", False), ("2.21.0", "2.16-3.15", True), ("1.2.2", "2.0-2.15", False),
])
def test_version_ranges_are_major_minor_inclusive(version, text, inside):
    assert producers.in_range(producers.Producer("keras", version), text) is inside
