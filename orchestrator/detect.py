"""Which format an INPUT is, when FROM is not given: each format's `sniff` (formats.py) looks at names and a few
bytes, never at a whole model; the format's own check (inputs.py) then reads it as a conversion would.

A sniff answers with a short description of what it saw (said to the user: "detected keras: HDF5 file") or None.
"""

import json
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from orchestrator import contents
from orchestrator.errors import InputError
from orchestrator.inputs import PICKLE_PROTO, ZIP_SIGNATURE
from orchestrator.inputs import _is_hdf5

MAX_JSON_SNIFF = 64 << 20  # a model.json larger than this is read by the format's check, not by the sniff


def _peek(path, n=1100):
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError:
        return b""


def _zip_names(path):
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError):
        return []


def keras(path):
    if not path.is_file():
        return None
    head = _peek(path)
    if _is_hdf5(head):
        return "an HDF5 file (Keras .h5)"
    if head.startswith(ZIP_SIGNATURE):
        names = _zip_names(path)
        if "config.json" in names and any(n in names for n in contents.WEIGHT_MEMBERS):
            return "a Keras v3 archive (config.json and weights)"
    return None


def _saved_model(path):
    return path.is_dir() and ((path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file())


def keras_saved_model(path):
    if _saved_model(path) and (path / "keras_metadata.pb").is_file():
        return "a SavedModel folder with Keras metadata (keras_metadata.pb)"
    return None


def tf_saved_model(path):
    if _saved_model(path) and not (path / "keras_metadata.pb").is_file():
        return "a SavedModel folder (saved_model.pb)"
    return None


def tf_frozen_model(path):
    if not path.is_file() or path.suffix.lower() != ".pb" or path.name == "saved_model.pb":
        return None
    head = _peek(path)
    if _is_hdf5(head) or head[4:8] == b"TFL3" or head[:1] == b"\x08":  # ONNX starts with ir_version (field 1)
        return None
    return "a .pb file (frozen GraphDef)"


def tflite(path):
    if path.is_file() and _peek(path, 8)[4:8] == b"TFL3":
        return "a TFLite flatbuffer (TFL3)"
    return None


def onnx(path):
    if not path.is_file() or path.name == "saved_model.pb":  # a SavedModel's proto starts with a varint too
        return None
    if _peek(path, 8)[:1] == b"\x08":  # ModelProto's field 1, ir_version: a varint
        return "an ONNX ModelProto"
    return None


def _tfjs_format(path):
    if not path.is_file() or path.suffix.lower() != ".json" or path.stat().st_size > MAX_JSON_SNIFF:
        return None
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("modelTopology"), dict):
        return None
    found = doc.get("format")
    if found in ("graph-model", "layers-model"):
        return found
    return "graph-model" if "node" in doc["modelTopology"] else "layers-model"


def tfjs_layers_model(path):
    return "a TensorFlow.js model.json (layers-model)" if _tfjs_format(path) == "layers-model" else None


def tfjs_graph_model(path):
    return "a TensorFlow.js model.json (graph-model)" if _tfjs_format(path) == "graph-model" else None


def pytorch(path):
    if not path.is_file():
        return None
    head = _peek(path)
    if head.startswith(ZIP_SIGNATURE):
        names = _zip_names(path)
        if any(PurePosixPath(n).name == "archive_format" for n in names):
            return "a torch.export ExportedProgram (.pt2)"
        if any(PurePosixPath(n).name == "constants.pkl" for n in names):
            return "a TorchScript archive"
        if any(PurePosixPath(n).name == "data.pkl" for n in names):
            return "a torch.save archive (state_dict or pickled module: give --model_code)"
    if head.startswith(PICKLE_PROTO) and path.suffix.lower() in (".pt", ".pth", ".bin", ".pkl"):
        return "a pickle written by torch.save"
    return None


def darknet(path):
    if not path.is_file() or path.suffix.lower() != ".cfg":
        return None
    text = _peek(path, 65536).decode("utf-8", "replace")
    if any(line.strip().lower() in ("[net]", "[network]") for line in text.splitlines()):
        return "a Darknet .cfg ([net] section)"
    return None


def ssd(path):
    if path.is_dir() and (path / "pipeline.config").is_file():
        return "a model-zoo folder (pipeline.config)"
    name = path.name.lower()
    if path.is_file() and name.endswith((".tar.gz", ".tgz", ".tar")):
        try:
            with tarfile.open(path) as tar:
                for member in tar:
                    if PurePosixPath(member.name).name == "pipeline.config":
                        return "a model-zoo tarball (pipeline.config inside)"
        except (tarfile.TarError, OSError, EOFError):
            return None
    return None


def jax(path):
    file, sep, name = str(path).rpartition(":")
    if sep and name.isidentifier() and file.endswith(".py") and Path(file).is_file():
        return "Python code FILE.py:NAME (a JAX/Flax build function)"
    return None


def candidates(path, formats):
    """[(format name, what was seen)] of every format among `formats` (name -> Format) whose sniff knows INPUT."""
    return [(f.name, seen) for f in formats.values() if f.sniff for seen in [f.sniff(Path(str(path)))] if seen]


def detect(path, formats):
    """(format name, what was seen) of INPUT among `formats`; InputError when none or several match, naming the
    candidates."""
    text = str(path)
    if "://" in text:
        raise InputError(path, "is a URL; conversions run with no network: download the model and give its path")
    found = candidates(path, formats)
    if len(found) == 1:
        return found[0]
    if found:
        raise InputError(path, "could be " + " or ".join(f"{name} ({seen})" for name, seen in found)
                         + "; name the format (FROM, or inspect --format) to choose")
    if not Path(text).exists() and not Path(text.rpartition(":")[0]).is_file():
        raise InputError(path, "no such file or folder")
    if Path(text).name == "saved_model.pb":
        raise InputError(path, "is the graph of a SavedModel; give the SavedModel's folder")
    names = ", ".join(f.name for f in formats.values() if f.sniff)
    raise InputError(path, f"is no model format this tool recognises ({names}); name its format (FROM, or inspect "
                           "--format) if it is one of them")
