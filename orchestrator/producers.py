"""Who wrote a model file, read on the host without ML imports: the library and version that saved it (HDF5
attributes through h5py, metadata.json inside a .keras archive, a SavedModel's MetaInfoDef). Stacks say which
versions they read (stack.json "reads"), and the planner routes a file to a stack that reads it."""

import json
import mmap
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator import protowire


VERSION_RE = re.compile(r"^(\d+)\.(\d+)")
LIBRARY_NAMES = {"tensorflow": "TensorFlow"}


@dataclass(frozen=True)
class Producer:
    library: str  # e.g. "keras" (Keras 2, tf_keras and Keras 3 all record keras_version)
    version: str  # as recorded, e.g. "3.15.1"
    details: dict = field(default_factory=dict, compare=False)  # e.g. backend, container

    @property
    def release(self):
        """(major, minor)"""
        m = VERSION_RE.match(self.version)
        return (int(m.group(1)), int(m.group(2))) if m else None

    @property
    def name(self):
        """The library as people call it: Keras 2.16+ files come from tf_keras (standalone Keras 2 ended at 2.15)."""
        if self.library == "keras":
            return "tf_keras" if self.release and self.release[0] == 2 and self.release[1] >= 16 else "Keras"
        return LIBRARY_NAMES.get(self.library, self.library)

    def describe(self):
        extra = ", ".join(f"{k} {v}" for k, v in self.details.items() if v)
        return f"{self.name} {self.version}" + (f" ({extra})" if extra else "")

    def to_json(self):
        return {"library": self.library, "version": self.version, "saved_by": f"{self.name} {self.version}",
                **self.details}


def parse_range(text):
    """'2.0-2.15' -> ((2, 0), (2, 15)): major.minor releases, both ends included."""
    low, _, high = str(text).partition("-")
    ends = []
    for part in (low, high or low):
        m = VERSION_RE.match(part.strip())
        if not m:
            raise ValueError(f"'{text}' is not a MAJOR.MINOR-MAJOR.MINOR range")
        ends.append((int(m.group(1)), int(m.group(2))))
    return tuple(ends)


def in_range(producer, text):
    low, high = parse_range(text)
    return producer.release is not None and low <= producer.release <= high


def _text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def keras(path):
    """The Producer of a Keras file (.keras archive or HDF5), or None when the file does not say or cannot be read
    here (the stack that loads it then says what is wrong with it, naming the file)."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                if "metadata.json" not in archive.namelist():
                    return None
                meta = json.loads(archive.read("metadata.json"))
        except (zipfile.BadZipFile, OSError, ValueError, KeyError):
            return None
        if not isinstance(meta, dict) or "keras_version" not in meta:
            return None
        return Producer("keras", str(meta["keras_version"]), {"container": "keras"})
    import h5py  # a file-format library, not an ML one

    try:
        with h5py.File(path, "r") as f:
            attrs = dict(f.attrs)
    except OSError:
        return None
    if "keras_version" not in attrs:
        return None
    details = {"container": "h5"}
    if "backend" in attrs:
        details["backend"] = _text(attrs["backend"])
    return Producer("keras", _text(attrs["keras_version"]), details)


# -- SavedModel: saved_model.pb is a SavedModel proto; each MetaGraphDef's MetaInfoDef records tensorflow_version ---
SAVED_MODEL_META_GRAPHS = 2  # SavedModel.meta_graphs
META_GRAPH_INFO = 1  # MetaGraphDef.meta_info_def
META_INFO_TF_VERSION = 5  # MetaInfoDef.tensorflow_version
PBTXT_VERSION_RE = re.compile(rb'tensorflow_version:\s*"([^"]*)"')


def saved_model(path):
    """The Producer of a SavedModel folder (TensorFlow, with the version its first MetaGraphDef records), or None
    when there is no saved_model.pb/.pbtxt or it cannot be read here. A SavedModel that records no version gets
    version "" (Producer.release None): the planner then takes the newest stack that reads SavedModels."""
    folder = Path(path)
    details = {"container": "saved_model"}
    pbtxt = folder / "saved_model.pbtxt"
    if not (folder / "saved_model.pb").is_file():
        if not pbtxt.is_file():
            return None
        found = PBTXT_VERSION_RE.search(pbtxt.read_bytes())
        return Producer("tensorflow", found.group(1).decode("utf-8", "replace") if found else "", details)
    try:
        with open(folder / "saved_model.pb", "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            graph = protowire.first(buf, SAVED_MODEL_META_GRAPHS)
            info = graph and protowire.first(buf, META_GRAPH_INFO, *graph)
            version = info and protowire.first(buf, META_INFO_TF_VERSION, *info)
            text = bytes(buf[version[0]:version[1]]).decode("utf-8", "replace") if version else ""
    except (OSError, ValueError):
        return None  # empty or not a protobuf: the stack loading it says what is wrong, naming the file
    return Producer("tensorflow", text, details)
