"""Model formats: names (tensorflowjs_converter's where they exist), what an input looks like on disk,
and cheap host-side checks that reject bad input before any container starts (no ML library needed)."""

import json
from dataclasses import dataclass
from pathlib import Path

from orchestrator.errors import InputError, UsageError

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURE = b"PK\x03\x04"


@dataclass(frozen=True)
class Format:
    name: str
    description: str
    kind: str  # "file" or "dir" (what INPUT must be)
    artifact: str  # name of the artifact a step writes for this format, inside its output folder
    internal: bool = False  # an intermediate format of a route, not offered as FROM or TO
    transit: bool = True  # may sit in the middle of a chain (TF.js formats only start or end one)
    with_folder: bool = False  # the file needs its folder (TF.js weight shards beside model.json; code's imports)


FORMATS = {f.name: f for f in (
    Format("keras", "Keras model in one HDF5 file (.h5), or a Keras v3 .keras archive", "file", "model.h5"),
    Format("keras_saved_model", "Keras model saved as a SavedModel folder (model.save(dir))", "dir", "keras_saved_model"),
    Format("tf_saved_model", "TensorFlow SavedModel folder", "dir", "saved_model"),
    Format("tf_frozen_model", "frozen TensorFlow GraphDef (.pb)", "file", "frozen_model.pb"),
    Format("tf_hub", "TensorFlow Hub module folder", "dir", "tf_hub"),
    Format("tfjs_layers_model", "TensorFlow.js layers model (model.json + weight shards)", "file", "model.json",
           transit=False, with_folder=True),
    Format("tfjs_graph_model", "TensorFlow.js graph model (model.json + weight shards)", "file", "model.json",
           transit=False, with_folder=True),
    Format("tflite", "TensorFlow Lite flatbuffer (.tflite)", "file", "model.tflite"),
    Format("onnx", "ONNX model (.onnx)", "file", "model.onnx"),
    Format("pytorch", "PyTorch model: TorchScript (torch.jit.save), ExportedProgram (.pt2), or a state_dict / "
           "pickled module with --model_code FILE.py:Class", "file", "model.pt"),
    Format("darknet", "Darknet .cfg, with its .weights given by --weights", "file", "model.cfg"),
    Format("jax", "JAX/Flax model as code: FILE.py:build, where build() returns (apply_fn, params)", "code",
           "module.py", transit=False, with_folder=True),
    Format("ssd", "TF1 Object Detection API SSD: model-zoo folder (pipeline.config + checkpoint) or its .tar.gz",
           "dir", "ssd"),
    Format("ssd_graph", "SSD graph exported for TFLite (tflite_graph.pb + ssd.json)", "file", "tflite_graph.pb",
           internal=True),
)}


def get(name):
    name = str(name)
    if name not in FORMATS:
        public = [n for n, f in FORMATS.items() if not f.internal]
        raise UsageError(f"unknown format '{name}'; formats: {', '.join(public)}")
    return FORMATS[name]


def _head(path, n=1100):
    with open(path, "rb") as fh:
        return fh.read(n)


def _is_hdf5(head):
    # the HDF5 superblock sits at offset 0, 512, 1024, ... (a user block may precede it)
    return any(head[off:off + 8] == HDF5_SIGNATURE for off in (0, 512, 1024))


def check_input(fmt_name, path, weights_dir=None):
    """Reject an input that cannot be a model of this format; return its resolved Path.
    `weights_dir`: where a TF.js model's shards are, when not beside model.json."""
    fmt = get(fmt_name)
    if "://" in str(path):
        raise InputError(path, "is a URL; conversions run with no network: download the model (e.g. the Hub "
                               "module's .tar.gz, unpacked) and give its folder")
    if fmt.kind == "code":
        return check_code(path, fmt_name)
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file or folder")
    if fmt.kind == "file" and path.is_dir():
        raise InputError(path, f"is a folder; format '{fmt_name}' expects a file ({fmt.description})")
    if fmt.kind == "dir" and fmt_name != "ssd" and not path.is_dir():
        raise InputError(path, f"is a file; format '{fmt_name}' expects a folder ({fmt.description})")
    checker = _CHECKS.get(fmt_name)
    if checker and fmt_name.startswith("tfjs_"):
        checker(path, weights_dir)
    elif checker:
        checker(path)
    return path.resolve()


def check_code(text, fmt_name="jax"):
    """FILE.py:NAME as INPUT: returns the resolved path with ':NAME' kept (its folder is what gets mounted, and
    the container reads FILE.py:NAME from it). Only the file's existence is checked here: it runs in a container."""
    file, sep, name = str(text).rpartition(":")
    if not sep or not file or not name.isidentifier():
        raise UsageError(f"'{text}': format '{fmt_name}' takes FILE.py:FUNCTION, e.g. module.py:build")
    path = Path(file)
    if not path.is_file():
        raise InputError(path, "no such file")
    if path.suffix != ".py":
        raise InputError(path, "is not a Python file (.py)")
    return Path(f"{path.resolve()}:{name}")


def code_file(path):
    """The .py file of a FILE.py:NAME input."""
    return Path(str(path).rpartition(":")[0])


def _check_ssd(path):
    if path.is_file() and not path.name.lower().endswith((".tar.gz", ".tgz", ".tar")):
        raise InputError(path, "is a file; an SSD model is a model-zoo folder or its .tar.gz")


def _check_nonempty(path):
    if path.stat().st_size == 0:
        raise InputError(path, "is empty")


def _check_keras(path):
    _check_nonempty(path)
    head = _head(path)
    if _is_hdf5(head) or head.startswith(ZIP_SIGNATURE):
        return
    if head.startswith(b"TFL3", 4):
        raise InputError(path, "is a TFLite model, not a Keras HDF5 file (FROM should be tflite)")
    raise InputError(path, "is not a Keras model: no HDF5 signature (corrupt or not an .h5 file)")


def _check_saved_model(path):
    if not ((path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file()):
        raise InputError(path, "is not a SavedModel folder: no saved_model.pb")


def _check_keras_saved_model(path):
    _check_saved_model(path)
    if not (path / "keras_metadata.pb").is_file():
        raise InputError(path, "is a SavedModel without Keras metadata (keras_metadata.pb); use FROM tf_saved_model")


def _check_frozen(path):
    _check_nonempty(path)
    head = _head(path)
    if _is_hdf5(head):
        raise InputError(path, "is an HDF5 (Keras) file, not a frozen GraphDef (FROM should be keras)")
    if head.startswith(b"TFL3", 4):
        raise InputError(path, "is a TFLite model, not a frozen GraphDef")


def _check_tflite(path):
    _check_nonempty(path)
    if _head(path, 8)[4:8] != b"TFL3":
        raise InputError(path, "is not a TFLite flatbuffer (no TFL3 identifier)")


PICKLE_PROTO = b"\x80"  # a pickle (torch.save before zip files) starts with PROTO


def _check_pytorch(path):
    _check_nonempty(path)
    head = _head(path)
    if head.startswith(ZIP_SIGNATURE) or head.startswith(PICKLE_PROTO):
        return  # TorchScript, ExportedProgram and torch.save files are zip archives (or, older, pickles)
    if _is_hdf5(head):
        raise InputError(path, "is an HDF5 (Keras) file, not a PyTorch model (FROM should be keras)")
    if head.startswith(b"TFL3", 4):
        raise InputError(path, "is a TFLite model, not a PyTorch model")
    if head[:1] == b"\x08":
        raise InputError(path, "looks like an ONNX model, not a PyTorch model (FROM should be onnx)")
    raise InputError(path, "is not a PyTorch file: neither a zip archive (torch.save, TorchScript, .pt2) nor a pickle")


def _check_onnx(path):
    _check_nonempty(path)
    head = _head(path)
    if head.startswith(ZIP_SIGNATURE) or head.startswith(PICKLE_PROTO):
        raise InputError(path, "is a PyTorch/zip file, not an ONNX model (FROM should be pytorch)")
    if _is_hdf5(head) or head.startswith(b"TFL3", 4):
        raise InputError(path, "is a Keras or TFLite model, not an ONNX model")
    if head[:1] != b"\x08":  # ModelProto field 1 (ir_version), a varint
        raise InputError(path, "is not an ONNX model (no ModelProto ir_version field at its start)")


def _check_darknet(path):
    _check_nonempty(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        raise InputError(path, "is not a Darknet .cfg (not a text file)") from None
    first = next((ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith(("#", ";"))), "")
    if first not in ("[net]", "[network]"):
        raise InputError(path, "is not a Darknet .cfg: it must start with a [net] section")


DTYPE_BYTES = {"float32": 4, "int32": 4, "bool": 1, "uint8": 1, "uint16": 2, "float16": 2, "int8": 1,
               "int16": 2, "complex64": 8}


def _check_tfjs(expected):
    def check(path, weights_dir=None):
        try:
            doc = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise InputError(path, f"is not valid JSON ({exc})") from exc
        if not isinstance(doc, dict) or "modelTopology" not in doc:
            raise InputError(path, "is not a TensorFlow.js model.json (no modelTopology)")
        found = doc.get("format")
        if found and found != expected:
            raise InputError(path, f"is a TensorFlow.js {found}, not a {expected}")
        check_weights_manifest(path, doc, weights_dir)
    return check


def check_weights_manifest(path, doc, weights_dir=None):
    """Every shard inside the model's folder (or `weights_dir`; checked before anything is read), present, and
    exactly as long as the weights it declares. Returns the shard files."""
    folder = Path(weights_dir).resolve() if weights_dir else path.parent.resolve()
    manifest = doc.get("weightsManifest", [])
    if not isinstance(manifest, list):
        raise InputError(path, "weightsManifest is not a list")
    groups = []
    for group in manifest:
        try:
            paths, weights = list(group["paths"]), list(group["weights"])
        except (KeyError, TypeError):
            raise InputError(path, "weightsManifest entry without paths and weights") from None
        files = []
        for p in paths:
            target = (folder / str(p)).resolve()
            if folder not in target.parents:
                raise InputError(path, f"weight path '{p}' points outside the {'weights' if weights_dir else 'model'}"
                                       " folder")
            files.append(target)
        groups.append((files, weights))
    for files, weights in groups:
        for f in files:
            if not f.is_file():
                raise InputError(path, f"weight shard '{f.name}' is missing")
        expected = 0
        for w in weights:
            dtype = (w.get("quantization") or {}).get("dtype") or w.get("dtype", "float32")
            if dtype not in DTYPE_BYTES:
                expected = None  # strings have no fixed size
                break
            count = 1
            for d in w.get("shape", []):
                count *= int(d)
            expected += count * DTYPE_BYTES[dtype]
        actual = sum(f.stat().st_size for f in files)
        if expected is not None and actual != expected:
            names = ", ".join(f.name for f in files)
            raise InputError(path, f"weight shards ({names}) hold {actual} bytes but the manifest declares "
                                   f"{expected}")
    return [f for files, _ in groups for f in files]


_CHECKS = {
    "ssd": _check_ssd,
    "keras": _check_keras,
    "keras_saved_model": _check_keras_saved_model,
    "tf_saved_model": _check_saved_model,
    "tf_frozen_model": _check_frozen,
    "tflite": _check_tflite,
    "pytorch": _check_pytorch,
    "onnx": _check_onnx,
    "darknet": _check_darknet,
    "tfjs_layers_model": _check_tfjs("layers-model"),
    "tfjs_graph_model": _check_tfjs("graph-model"),
}
