"""Input adapters: how a source format's INPUT is checked on the host, hashed for the manifest, and mounted into
the first step (and into the verification's reference runner). One small adapter per kind of input, registered
with its formats in formats.py; the pipeline only calls `check` and `prepare`.

Checks are cheap and need no ML library: they reject bad input before any container starts, with one line
naming the file and the cause.
"""

import contextlib
import hashlib
import json
import mmap
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

from orchestrator import contents, onnxfile, producers, protocol, protowire, shapes, ssd, tfbundle
from orchestrator.errors import InputError, UsageError

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURE = b"PK\x03\x04"
PICKLE_PROTO = b"\x80"  # a pickle (torch.save before zip files) starts with PROTO
MODEL = protocol.MODEL_DIR


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_hashes(path):
    """{relative path: sha256} for a file or every file under a folder."""
    path = Path(path)
    if path.is_file():
        return {path.name: sha256_file(path)}
    return {f.relative_to(path).as_posix(): sha256_file(f) for f in sorted(path.rglob("*")) if f.is_file()}


@dataclass
class Source:
    """A checked INPUT: what the rest of the conversion needs to know of it."""

    path: Path  # the user's input, resolved (a code reference keeps its ':NAME')
    files: dict  # {name in the manifest: host file} hashed into the manifest
    state: dict = field(default_factory=dict)  # what the adapter parsed while checking (parsed once)

    def hashes(self):
        return {name: sha256_file(f) for name, f in self.files.items()}


@dataclass
class Mounted:
    """The input as the first step (or a reference runner) sees it."""

    mounts: dict  # host path -> container path, read-only
    model: str  # container path given as --input
    args: list = field(default_factory=list)  # extra arguments of the first step
    facts: dict = field(default_factory=dict)  # what preparing found out (the manifest's input.model)


class Adapter:
    """A plain file or folder, checked by `inspect(path)`, mounted as itself."""

    expects = "file"  # what INPUT must be: "file", "folder" or "file or folder" (for the messages)
    options = ()  # options this input takes: accepted for routes starting here, consumed here (not passed on)
    required = ()  # options it cannot do without

    def __init__(self, inspect=None, expects=None):
        self._inspect = inspect
        if expects:
            self.expects = expects

    def check(self, fmt, path, values=None):
        """Reject an input that cannot be a model of this format; return its Source."""
        if "://" in str(path):
            raise InputError(path, "is a URL; conversions run with no network: download the model (e.g. the Hub "
                                   "module's .tar.gz, unpacked) and give its folder")
        path = Path(path)
        if not path.exists():
            raise InputError(path, "no such file or folder")
        contents.check_mountable(path.absolute())
        if not (path.is_file() or path.is_dir()):
            raise InputError(path, "is a device, FIFO or socket, not a file or folder")
        if self.expects == "file" and path.is_dir():
            raise InputError(path, f"is a folder; format '{fmt.name}' expects a file ({fmt.description})")
        if self.expects == "folder" and not path.is_dir():
            raise InputError(path, f"is a file; format '{fmt.name}' expects a folder ({fmt.description})")
        state = self.inspect(path, values or {}) or {}
        path = path.resolve()
        return Source(path, self.files(path, values or {}, state), state)

    def inspect(self, path, values):
        if self._inspect:
            self._inspect(path)

    def producer(self, path):
        """Who wrote the file (producers.Producer), when the format records it and routes depend on it."""
        return None

    def describe(self, source):
        """Lines `plan --input` shows about what checking the input found (none by default)."""
        return []

    def files(self, path, values, state):
        """{name in the manifest: host file} to hash (`state`: what inspect() found)."""
        if path.is_file():
            return {path.name: path}
        return {f.relative_to(path).as_posix(): f for f in sorted(path.rglob("*")) if f.is_file()}

    def prepare(self, source, values, scratch):
        container = f"{MODEL}/{source.path.name}"
        return Mounted({str(source.path): container}, container)


class KerasFile(Adapter):
    """A Keras file (.h5 or .keras): the version of Keras that saved it picks the stack that reads it."""

    def inspect(self, path, values):
        check_keras(path)

    def producer(self, path):
        path = Path(path)
        # anything else wrong with the file is check()'s to say (producers.keras reads nothing it cannot)
        return producers.keras(path) if path.is_file() else None


class SavedModelFolder(Adapter):
    """A SavedModel folder: the TensorFlow version recorded in saved_model.pb picks the stack that reads it. Checked
    through: saved_model.pb parses as a SavedModel, the variables checkpoint is whole, no link leads out of it."""

    expects = "folder"

    def producer(self, path):
        path = Path(path)
        return producers.saved_model(path) if path.is_dir() else None


class TfjsModel(Adapter):
    """model.json and its weight shards: beside it, or in the folder --weights_path_prefix names (gathered into one
    folder for the TF.js tools). The manifest is parsed and the shards checked once."""

    options = ("weights_path_prefix",)

    def __init__(self, expected):
        super().__init__()
        self.expected = expected  # "layers-model" or "graph-model"

    def inspect(self, path, values):
        _check_nonempty(path)
        try:
            doc = json.loads(path.read_bytes())
        except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise InputError(path, f"is not valid JSON ({contents.first_line(exc)})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("modelTopology"), dict):
            raise InputError(path, "is not a TensorFlow.js model.json (no modelTopology)")
        found = doc.get("format")
        if found and found != self.expected:
            raise InputError(path, f"is a TensorFlow.js {found}, not a {self.expected}")
        if found == "graph-model" or (not found and "node" in doc["modelTopology"]):
            if self.expected != "graph-model":
                raise InputError(path, f"is a TensorFlow.js graph-model, not a {self.expected}")
        topology = doc["modelTopology"]
        if self.expected == "layers-model":
            contents.check_layers_config(path, topology.get("model_config", topology))
        state = {"doc": doc, "shards": check_weights_manifest(path, doc, values.get("weights_path_prefix"))}
        if self.expected == "graph-model":
            try:
                state["io"] = graph_io(path, doc, values)
            except (AttributeError, TypeError) as exc:  # a node, attr or signature of the wrong JSON type
                raise InputError(path, f"is not a TensorFlow.js graph model: its graph is malformed ({exc})") from None
        return state

    def files(self, path, values, state):
        return {path.name: path, **{f.name: f for f in state["shards"]}}

    def describe(self, source):
        """Lines for `plan --input`: a graph model's inputs and outputs, and where they come from."""
        io = source.state.get("io")
        if not io:
            return []
        return [f"  graph {kind} ({io['source']}): " + ", ".join(
            f"{t['name']} {t['dtype']}{t['shape'] if t['shape'] is not None else ''}" for t in io[kind])
            for kind in ("inputs", "outputs")]

    def prepare(self, source, values, scratch):
        mounted = self._mounted(source, values, scratch)
        io = source.state.get("io")
        if io and io["source"] != "signature":  # the graph's own inputs and outputs, as TF.js finds them
            mounted.facts["graph_io"] = io
            for kind in ("inputs", "outputs"):
                if f"{kind[:-1]}_names" not in values:
                    mounted.args += [f"--{kind[:-1]}_names", ",".join(t["name"] for t in io[kind])]
        return mounted

    def _mounted(self, source, values, scratch):
        if "weights_path_prefix" not in values:
            return Mounted({str(source.path.parent): MODEL}, f"{MODEL}/{source.path.name}")
        folder = Path(scratch) / "tfjs"
        folder.mkdir(parents=True)
        shutil.copyfile(source.path, folder / "model.json")
        weights_dir = Path(values["weights_path_prefix"])
        for group in source.state["doc"].get("weightsManifest", []):
            for p in group["paths"]:
                target = folder / p
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(weights_dir / p, target)
        return Mounted({str(folder): MODEL}, f"{MODEL}/model.json")


class CodeReference(Adapter):
    """FILE.py:NAME: the file's folder is mounted (the code may import its neighbours); the file is hashed. Only its
    existence is checked here: the code runs in a no-network container."""

    expects = "FILE.py:NAME"

    def check(self, fmt, path, values=None):
        file, sep, name = str(path).rpartition(":")
        if not sep or not file or not name.isidentifier():
            raise UsageError(f"'{path}': format '{fmt.name}' takes FILE.py:FUNCTION, e.g. module.py:build")
        if "://" in file:
            raise InputError(path, "is a URL; conversions run with no network")
        file = Path(file)
        if not file.is_file():
            raise InputError(file, "no such file")
        contents.check_mountable(file.absolute())
        if file.suffix != ".py":
            raise InputError(file, "is not a Python file (.py)")
        contents.check_python(file, name)
        if (values or {}).get("params"):
            contents.check_msgpack(values["params"], "--params")
        file = file.resolve()
        return Source(Path(f"{file}:{name}"), {file.name: file}, {"file": file, "name": name})

    def prepare(self, source, values, scratch):
        file = source.state["file"]
        return Mounted({str(file.parent): MODEL}, f"{MODEL}/{file.name}:{source.state['name']}")


class DarknetModel(Adapter):
    """A .cfg with its .weights (--weights): both hashed, both mounted."""

    options = required = ("weights",)

    def files(self, path, values, state):
        weights = Path(values["weights"]) if values.get("weights") else None
        return {path.name: path, **({weights.name: weights} if weights else {})}

    def inspect(self, path, values):
        _check_nonempty(path)
        contents.check_darknet(path)
        if values.get("weights"):
            contents.check_darknet_weights(values["weights"])

    def prepare(self, source, values, scratch):
        mounted = super().prepare(source, values, scratch)
        if not values.get("weights"):  # `inspect` reads the .cfg alone
            return mounted
        weights = Path(values["weights"])
        mounted.mounts[str(weights)] = f"{protocol.OPTION_DIR}/weights/{weights.name}"
        mounted.args += ["--weights", f"{protocol.OPTION_DIR}/weights/{weights.name}"]
        return mounted


class SsdModel(Adapter):
    """A model-zoo folder (pipeline.config + checkpoint) or its tarball, unpacked safely; --pipeline_config and
    --checkpoint override what is found in it."""

    expects = "file or folder"
    options = ("pipeline_config", "checkpoint")

    def inspect(self, path, values):
        if path.is_file() and not ssd.is_tarball(path):
            raise InputError(path, "is a file; an SSD model is a model-zoo folder or its .tar.gz")
        if path.is_file():
            _check_nonempty(path)
        ssd.check(path, values)

    def prepare(self, source, values, scratch):
        mounts, model, args, facts = ssd.prepare(source.path, values, scratch)
        return Mounted(mounts, model, args, facts)


# -- TF.js graph models: their inputs and outputs ----------------------------------------------------------------
NO_TENSOR = ("NoOp",)  # a node without an output tensor is no output (TF.js would list it, and return nothing)


def node_name(name):
    """'x', 'x:0' and '^x' all name node x (op and tensor spellings are both accepted)."""
    name = str(name).lstrip("^")
    head, sep, index = name.rpartition(":")
    return head if sep and index.isdigit() else name


DTYPES = {"DT_FLOAT": "float32", "DT_HALF": "float16", "DT_DOUBLE": "float64", "DT_INT32": "int32",
          "DT_INT64": "int64", "DT_INT8": "int8", "DT_UINT8": "uint8", "DT_INT16": "int16", "DT_BOOL": "bool",
          "DT_STRING": "string"}


def _dtype(value):
    return DTYPES.get(str(value or "DT_FLOAT"), str(value).replace("DT_", "").lower())


def _shape(attr):
    """A node's shape from its `shape` attr (a Placeholder) or `_output_shapes`; None when it does not say."""
    shape = ((attr or {}).get("shape") or {}).get("shape")
    if shape is None:
        listed = (((attr or {}).get("_output_shapes") or {}).get("list") or {}).get("shape") or []
        shape = listed[0] if listed else None
    if shape is None or shape.get("unknownRank"):
        return None
    try:
        return [int(d.get("size", -1)) for d in shape.get("dim", [])]
    except (TypeError, ValueError, AttributeError):
        return None  # no shape that can be read: as if it said none


def graph_io(path, doc, values):
    """{"inputs", "outputs": [{name, dtype, shape}], "source"} of a TF.js graph model: its signature; without one,
    what the TF.js runtime takes (its Placeholder nodes as inputs, the nodes nothing consumes as outputs, weights and
    control nodes aside); --input_names / --output_names (op or tensor spelling) choose instead."""
    listed = (doc.get("modelTopology") or {}).get("node", [])
    nodes = {n.get("name"): n for n in listed if isinstance(n, dict)} if isinstance(listed, list) else {}
    signature = doc.get("signature") if isinstance(doc.get("signature"), dict) else {}
    found = {}
    for kind in ("inputs", "outputs"):
        given = values.get(f"{kind[:-1]}_names")
        if isinstance(given, str):
            given = [n for n in given.split(",") if n]
        if given:
            names, source = [node_name(n) for n in given], f"--{kind[:-1]}_names"
        elif signature.get(kind):
            names, source = [node_name(t.get("name", k)) for k, t in signature[kind].items()], "signature"
        elif kind == "inputs":  # as TF.js's OperationMapper: Placeholder* nodes, and every node nothing consumes
            names = [n for n, node in nodes.items() if str(node.get("op", "")).startswith("Placeholder")]
            source = "inferred"
        else:
            consumed = {node_name(i) for node in nodes.values() for i in node.get("input", [])}
            names = [n for n, node in nodes.items() if n not in consumed and node.get("op") not in NO_TENSOR]
            source = "inferred"
        why = shapes.too_many(len(names), kind)
        if why:
            raise InputError(path, why)
        missing = [n for n in names if n not in nodes]
        if missing:
            raise InputError(path, f"the graph has no node {', '.join(repr(n) for n in missing)} ({source})")
        if not names:
            raise InputError(path, f"the graph model has no {kind} (no signature, and none to infer)")
        attrs = [nodes[n].get("attr") or {} for n in names]
        found[kind] = [{"name": n, "dtype": _dtype((a.get("dtype") or a.get("T") or {}).get("type")),
                        "shape": _shape(a)} for n, a in zip(names, attrs)]
        for tensor in found[kind] if kind == "inputs" else ():
            why = shapes.problem(tensor["shape"])
            if why:
                raise InputError(path, f"input '{tensor['name']}' of shape {shapes.describe(tensor['shape'])} {why}")
        found[f"{kind}_source"] = source
    inputs_from, outputs_from = found.pop("inputs_source"), found.pop("outputs_source")
    found["source"] = inputs_from if inputs_from == outputs_from else f"{inputs_from}, outputs {outputs_from}"
    return found


# -- content checks (cheap, no ML library) ---------------------------------------------------------------------
def _head(path, n=1100):
    with open(path, "rb") as fh:
        return fh.read(n)


@contextlib.contextmanager
def _mapped(path):
    """The file's bytes, mapped (a frozen graph may be hundreds of MB); a non-empty file."""
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        yield buf


def _is_hdf5(head):
    # the HDF5 superblock sits at offset 0, 512, 1024, ... (a user block may precede it)
    return any(head[off:off + 8] == HDF5_SIGNATURE for off in (0, 512, 1024))


def _check_nonempty(path):
    if path.stat().st_size == 0:
        raise InputError(path, "is empty")


def check_keras(path):
    _check_nonempty(path)
    head = _head(path)
    named_keras = path.suffix.lower() == ".keras"
    if _is_hdf5(head):
        if named_keras:
            raise InputError(path, "is an HDF5 file named .keras; Keras reads a .keras file as a zip archive: "
                                   "rename it to .h5")
        contents.check_keras_h5(path)
        return
    if head.startswith(ZIP_SIGNATURE):
        if not named_keras:
            raise InputError(path, "is a zip archive (a Keras v3 .keras file?) but not named .keras; Keras reads "
                                   "other names as HDF5: rename it to .keras")
        contents.check_keras_archive(path)
        return
    if head.startswith(b"TFL3", 4):
        raise InputError(path, "is a TFLite model, not a Keras HDF5 file (FROM should be tflite)")
    raise InputError(path, "is not a Keras model: neither an HDF5 file (.h5) nor a zip archive (.keras): corrupt or "
                           "another format")


def _protobuf(path, schema, what, required):
    """Walk a protobuf file against `schema`; raise WireError."""
    with _mapped(path) as buf:
        protowire.check(buf, schema, strict=True, required=required, what=what)


def check_saved_model(path):
    pb = path / "saved_model.pb"
    if not (pb.is_file() or (path / "saved_model.pbtxt").is_file()):
        raise InputError(path, "is not a SavedModel folder: no saved_model.pb")
    contents.check_tree(path)
    if pb.is_file():
        _check_nonempty(pb)
        try:
            _protobuf(pb, protowire.SAVED_MODEL, "SavedModel", (2,))
        except protowire.WireError as exc:
            raise InputError(pb, f"is not a SavedModel: truncated or corrupt ({exc})") from None
    variables = path / "variables"
    if (variables / "variables.index").exists() or list(variables.glob("variables.data-*")):
        tfbundle.check(variables / "variables")


def check_keras_saved_model(path):
    check_saved_model(path)
    if not (path / "keras_metadata.pb").is_file():
        raise InputError(path, "is a SavedModel without Keras metadata (keras_metadata.pb); use FROM tf_saved_model")


def check_frozen(path):
    _check_nonempty(path)
    head = _head(path)
    if _is_hdf5(head):
        raise InputError(path, "is an HDF5 (Keras) file, not a frozen GraphDef (FROM should be keras)")
    if head.startswith(b"TFL3", 4):
        raise InputError(path, "is a TFLite model, not a frozen GraphDef")
    try:
        _protobuf(path, protowire.GRAPH_DEF, "GraphDef", (1,))
    except protowire.WireError as exc:
        for schema, what, said in ((protowire.SAVED_MODEL, "SavedModel", "a SavedModel's saved_model.pb, not a "
                                    "frozen GraphDef (FROM tf_saved_model takes its folder)"),
                                   (onnxfile.MODEL, "ModelProto", "an ONNX model, not a frozen GraphDef (FROM should "
                                                                  "be onnx)")):
            with contextlib.suppress(protowire.WireError):
                _protobuf(path, schema, what, (2,) if what == "SavedModel" else (1, 7))
                raise InputError(path, f"is {said}") from None
        raise InputError(path, f"is not a frozen GraphDef: truncated or corrupt ({exc})") from None


def check_tflite(path):
    _check_nonempty(path)
    if _head(path, 8)[4:8] != b"TFL3":
        raise InputError(path, "is not a TFLite flatbuffer (no TFL3 identifier)")


def check_pytorch(path):
    _check_nonempty(path)
    head = _head(path)
    if head.startswith(ZIP_SIGNATURE):
        _check_torch_zip(path)
        return  # TorchScript, ExportedProgram and torch.save files are zip archives
    if head.startswith(PICKLE_PROTO):
        return  # torch.save before zip files: a pickle
    if _is_hdf5(head):
        raise InputError(path, "is an HDF5 (Keras) file, not a PyTorch model (FROM should be keras)")
    if head.startswith(b"TFL3", 4):
        raise InputError(path, "is a TFLite model, not a PyTorch model")
    if head[:1] == b"\x08":
        raise InputError(path, "looks like an ONNX model, not a PyTorch model (FROM should be onnx)")
    raise InputError(path, "is not a PyTorch file: neither a zip archive (torch.save, TorchScript, .pt2) nor a pickle")


def _check_torch_zip(path):
    """torch.save and TorchScript archives hold ARCHIVE/data.pkl, ExportedPrograms ARCHIVE/archive_format."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
        raise InputError(path, f"is not a readable zip archive: truncated or corrupt ({contents.first_line(exc)})") \
            from None
    if any(PurePosixPath(n).name in ("data.pkl", "archive_format") for n in names):
        return
    if "config.json" in names and any(n in names for n in contents.WEIGHT_MEMBERS):
        raise InputError(path, "is a Keras .keras archive, not a PyTorch model (FROM should be keras)")
    raise InputError(path, "is a zip archive but not a PyTorch file (no data.pkl or archive_format in it)")


def check_onnx(path):
    """Check an ONNX model to its end and its external data files; return their names (relative to its folder)."""
    _check_nonempty(path)
    head = _head(path)
    if head.startswith(ZIP_SIGNATURE) or head.startswith(PICKLE_PROTO):
        raise InputError(path, "is a PyTorch/zip file, not an ONNX model (FROM should be pytorch)")
    if _is_hdf5(head) or head.startswith(b"TFL3", 4):
        raise InputError(path, "is a Keras or TFLite model, not an ONNX model")
    if head[:1] != b"\x08":  # ModelProto field 1 (ir_version), a varint
        raise InputError(path, "is not an ONNX model (no ModelProto ir_version field at its start)")
    try:
        with _mapped(path) as buf:
            found = onnxfile.read(buf)
    except protowire.WireError as exc:
        raise InputError(path, f"is not an ONNX model: truncated or corrupt ({exc})") from None
    why = shapes.too_many(len(found["inputs"]))
    if why:
        raise InputError(path, why)
    for name, dims in found["inputs"]:
        why = shapes.problem(dims, unknown=(None,))
        if why:
            raise InputError(path, f"input '{name}' of shape {shapes.describe(dims)} {why}")
    for tensor, external in found["external"]:
        _check_external_data(path, tensor, external)
    return sorted({external.get("location", "") for _, external in found["external"]})


class OnnxFile(Adapter):
    """An ONNX model. With external data (large models: the weights in files beside the .onnx) its folder is mounted,
    so the converter finds them, and the data files are hashed with it (they are part of the model)."""

    def inspect(self, path, values):
        return {"external": check_onnx(path)}

    def files(self, path, values, state):
        found = {path.name: path}
        for name in state.get("external") or ():
            found[name] = (path.parent / name).resolve()
        return found

    def prepare(self, source, values, scratch):
        if source.state.get("external"):
            return Mounted({str(source.path.parent): MODEL}, f"{MODEL}/{source.path.name}")
        return super().prepare(source, values, scratch)


def _local_name(model, name, what):
    """The file `name` (a relative path in a model's folder, as a model file names it) resolved in `model`'s folder,
    or InputError(model) saying why it cannot be read from there."""
    if "://" in name or name.startswith("//"):
        raise InputError(model, f"{what} '{name}' is a URL; conversions read local files only, with no network: "
                                "download it beside the model")
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute():
        raise InputError(model, f"{what} '{name}' is an absolute path, outside the model's folder; the files of a "
                                "model lie beside it")
    folder = model.parent.resolve()
    try:
        target = (folder / name).resolve()
    except (OSError, ValueError) as exc:
        raise InputError(model, f"{what} '{name}' is not a usable file name ({exc})") from None
    if folder not in target.parents:
        raise InputError(model, f"{what} '{name}' points outside the model's folder")
    return target


def _check_external_data(model, tensor, external):
    name = external.get("location", "")
    target = _local_name(model, name, f"the external data of initializer '{tensor}'")
    if not target.is_file():
        raise InputError(model.parent / name, f"is missing (the external data of initializer '{tensor}' in "
                                              f"{model.name})")
    try:
        offset, length = int(external.get("offset") or 0), external.get("length")
        end = offset + int(length) if length else offset
    except ValueError:
        raise InputError(model, f"initializer '{tensor}': external data offset/length are not numbers") from None
    size = target.stat().st_size
    if end > size:
        raise InputError(target, f"holds {size} bytes but {model.name} reads initializer '{tensor}' up to byte "
                                 f"{end} (truncated)")


# TF.js weight dtypes (tfjs-core's DataType), and the stored dtypes of quantized weights
DTYPE_BYTES = {"float32": 4, "int32": 4, "bool": 1, "complex64": 8}
QUANTIZED_BYTES = {"uint8": 1, "uint16": 2, "float16": 2}


def _weight_bytes(path, w):
    """Bytes a weightsManifest entry takes in its shard, or None for a string weight (no fixed size)."""
    if not isinstance(w, dict) or not isinstance(w.get("name"), str):
        raise InputError(path, "weightsManifest holds a weight without a name")
    dtype, quantization = w.get("dtype", "float32"), w.get("quantization")
    if dtype == "string":
        return None
    if dtype not in DTYPE_BYTES:
        raise InputError(path, f"weight '{w['name']}' has dtype '{dtype}', which TF.js does not have "
                               f"({', '.join(list(DTYPE_BYTES) + ['string'])})")
    size = DTYPE_BYTES[dtype]
    if quantization is not None:
        stored = quantization.get("dtype") if isinstance(quantization, dict) else None
        if stored not in QUANTIZED_BYTES:
            raise InputError(path, f"weight '{w['name']}' is quantized to '{stored}', which TF.js does not read "
                                   f"({', '.join(QUANTIZED_BYTES)})")
        size = QUANTIZED_BYTES[stored]
    dims = w.get("shape", [])
    if not isinstance(dims, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                             for d in dims):
        raise InputError(path, f"weight '{w['name']}' has shape {json.dumps(dims)}: not a list of sizes (whole "
                               "numbers, 0 or more)")
    count = 1
    for d in dims:
        count *= d
    return count * size


def check_weights_manifest(path, doc, weights_dir=None):
    """Every shard inside the model's folder (or `weights_dir`; checked before anything is read), present, and
    exactly as long as the weights it declares. Returns the shard files."""
    base = Path(weights_dir) / "model.json" if weights_dir else path
    manifest = doc.get("weightsManifest", [])
    if not isinstance(manifest, list):
        raise InputError(path, "weightsManifest is not a list")
    groups = []
    for group in manifest:
        paths = group.get("paths") if isinstance(group, dict) else None
        weights = group.get("weights") if isinstance(group, dict) else None
        if not (isinstance(paths, list) and isinstance(weights, list) and all(isinstance(p, str) for p in paths)):
            raise InputError(path, "weightsManifest entry without a list of paths and a list of weights")
        where = "weights folder" if weights_dir else "model folder"
        files = []
        for p in paths:
            try:
                files.append(_local_name(base, p, "weight path"))
            except InputError as exc:
                raise InputError(path, exc.cause.replace("the model's folder", f"the {where}")) from None
        groups.append((files, weights))
    for files, weights in groups:
        for f in files:
            if not f.is_file():
                raise InputError(path, f"weight shard '{f.name}' is missing")
        sizes = [_weight_bytes(path, w) for w in weights]
        actual = sum(f.stat().st_size for f in files)
        if None not in sizes and actual != sum(sizes):
            names = ", ".join(f.name for f in files)
            raise InputError(path, f"weight shards ({names}) hold {actual} bytes but the manifest declares "
                                   f"{sum(sizes)}")
    return [f for files, _ in groups for f in files]
