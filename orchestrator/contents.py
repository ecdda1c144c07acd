"""What a model file holds, read on the host without any ML library and without running anything from it: an HDF5
file's attributes (h5py), a Keras model's config and its input shapes, a .keras archive, the names a Python file
defines (its syntax tree, never executed), a msgpack file's structure, a Darknet cfg's sections, a model folder's
links. Each reader raises InputError naming the file and what is wrong with it."""

import ast
import json
import os
import stat
import tokenize
import zipfile
from pathlib import Path

from orchestrator import shapes
from orchestrator.errors import InputError


def first_line(exc):
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def check_mountable(path, via=""):
    """A path the Docker engine can mount: its API carries paths as UTF-8 text, so a name holding bytes that are not
    UTF-8 (kept by Python as lone surrogates) cannot reach it."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(path, f"its name holds bytes that are not UTF-8, which the Docker engine cannot mount: rename "
                               f"it{via}") from None


# -- HDF5 and Keras ----------------------------------------------------------------------------------------------
def hdf5_attrs(source, name):
    """The root attributes of an HDF5 file (a path or a file object); `name`: the file as messages name it."""
    import h5py  # a file-format library, not an ML one

    try:
        with h5py.File(source, "r") as f:
            return {k: v.decode("utf-8", "replace") if isinstance(v, bytes) else v for k, v in f.attrs.items()}
    except (OSError, ValueError) as exc:
        raise InputError(name, f"is not a readable HDF5 file: truncated or corrupt ({first_line(exc)})") from None


def _input_shapes(node, found):
    """[(layer name, shape)] of every batch_input_shape / batch_shape in a Keras or TF.js layers config."""
    if isinstance(node, dict):
        for key in ("batch_input_shape", "batch_shape"):
            if isinstance(node.get(key), list):
                found.append((str(node.get("name", "?")), node[key]))
        for value in node.values():
            _input_shapes(value, found)
    elif isinstance(node, list):
        for value in node:
            _input_shapes(value, found)
    return found


def _count_inputs(config):
    """How many inputs a Keras / TF.js layers model config declares (its input_layers, else its InputLayers)."""
    inner = config.get("config") if isinstance(config, dict) else None
    listed = inner.get("input_layers") if isinstance(inner, dict) else None
    if isinstance(listed, list):
        return len(listed)
    layers = inner.get("layers") if isinstance(inner, dict) else None
    return sum(1 for layer in layers or [] if isinstance(layer, dict) and layer.get("class_name") == "InputLayer")


CONTAINERS = ("Sequential", "Functional", "Model")


def _check_structure(name, config):
    """A model config is {class_name, config}; a Sequential or functional model's config lists its layers, each a
    {class_name, config} (Keras 2.0's Sequential config is the list itself)."""
    if not isinstance(config, dict) or not isinstance(config.get("class_name"), str):
        raise InputError(name, "its model config has no class_name: not a Keras or TF.js layers model")
    if config["class_name"] not in CONTAINERS:
        return
    inner = config.get("config")
    layers = inner if isinstance(inner, list) else inner.get("layers") if isinstance(inner, dict) else None
    if not isinstance(layers, list) or not all(isinstance(layer, dict) and isinstance(layer.get("class_name"), str)
                                               and isinstance(layer.get("config", {}), dict) for layer in layers):
        raise InputError(name, f"its {config['class_name']} model config does not list its layers (each a "
                               "class_name and a config): malformed")


def check_layers_config(name, config):
    """A Keras (or TF.js layers) model config: well formed, not more inputs than any model has, no absurd input
    shape."""
    _check_structure(name, config)
    why = shapes.too_many(_count_inputs(config))
    if why:
        raise InputError(name, why)
    for layer, dims in _input_shapes(config, []):
        why = shapes.problem(dims, unknown=(None,))
        if why:
            raise InputError(name, f"input layer '{layer}' of shape {shapes.describe(dims)} {why}")


def _json(name, text, what):
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(name, f"its {what} is not valid JSON ({first_line(exc)})") from None


def check_keras_h5(path):
    attrs = hdf5_attrs(path, path)
    if "model_config" not in attrs:
        raise InputError(path, "holds no model (no model_config attribute): a weights-only file? Save the whole "
                               "model (model.save)")
    check_layers_config(path, _json(path, attrs["model_config"], "model_config"))


WEIGHT_MEMBERS = ("model.weights.h5", "model.weights.npz")


def check_keras_archive(path):
    """A Keras v3 .keras file: a zip with config.json and the weights file, each readable."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if "config.json" not in names:
                if any(n.endswith("data.pkl") for n in names):
                    raise InputError(path, "is a PyTorch file, not a Keras .keras archive (FROM should be pytorch)")
                raise InputError(path, "is a zip archive without config.json: not a Keras .keras file")
            weights = next((n for n in WEIGHT_MEMBERS if n in names), None)
            if weights is None:
                raise InputError(path, "has no model.weights.h5 (a .keras archive holds config.json and its "
                                       "weights): incomplete")
            config = _json(path, archive.read("config.json"), "config.json")
            if weights.endswith(".h5"):
                with archive.open(weights) as member:
                    hdf5_attrs(member, f"{path} (its {weights})")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
        raise InputError(path, f"is not a readable zip archive: truncated or corrupt ({first_line(exc)})") from None
    check_layers_config(path, config)


# -- model folders -----------------------------------------------------------------------------------------------
def check_tree(folder):
    """Everything in a model folder is a file or a folder inside it: no link pointing out of it (the container
    would not see the target, or would see its own), no device, FIFO or socket."""
    folder = Path(folder)
    top = folder.resolve()
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            entry = Path(root) / name
            mode = entry.lstat().st_mode
            if stat.S_ISLNK(mode):
                target = entry.resolve()
                if target != top and top not in target.parents:
                    raise InputError(entry, f"is a symbolic link to {target}, outside the input folder {folder}")
            elif not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                raise InputError(entry, "is a device, FIFO or socket; a model folder holds only files and folders")


# -- Python source (the JAX module, --model_code) ------------------------------------------------------------------
def _bound(body, names):
    """Names bound at a module's top level (inside top-level if/try/with/for blocks too)."""
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.For, ast.AsyncFor, ast.With,
                               ast.AsyncWith)):
            targets = getattr(node, "targets", None) or [getattr(node, "target", None)]
            targets += [item.optional_vars for item in getattr(node, "items", [])]
            names.update(n.id for t in targets if t is not None for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                names.add("*" if alias.name == "*" else (alias.asname or alias.name.split(".")[0]))
        for field in ("body", "orelse", "finalbody", "handlers"):
            inner = getattr(node, field, None)
            if isinstance(inner, list) and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                                 ast.ClassDef)):
                _bound(inner, names)
    return names


def check_python(path, name, given_to=""):
    """`path` parses as Python and binds `name` at its top level. The code is read, never run (it runs only inside
    a no-network container). `given_to`: the option naming the file, for the message."""
    path = Path(path)
    via = f" (given to {given_to})" if given_to else ""
    if path.stat().st_size == 0:
        raise InputError(path, f"is empty{via}")
    try:
        with tokenize.open(path) as fh:
            tree = ast.parse(fh.read(), filename=str(path))
    except SyntaxError as exc:
        where = f" (line {exc.lineno})" if exc.lineno else ""
        raise InputError(path, f"is not valid Python: SyntaxError: {exc.msg.split(' for ')[0]}{where}{via}") from None
    except (UnicodeDecodeError, ValueError, RecursionError, MemoryError) as exc:
        raise InputError(path, f"is not Python source ({first_line(exc)}){via}") from None
    bound = _bound(tree.body, set())
    if name not in bound and "*" not in bound and "__getattr__" not in bound:
        raise InputError(path, f"defines no '{name}' at its top level{via}")


# -- msgpack (Flax params) -------------------------------------------------------------------------------------------
def _msgpack_item(buf, pos, depth=0):
    """The position after the msgpack object at `pos` (its structure walked, nothing decoded)."""
    if depth > 512:
        raise ValueError("nested too deeply")
    if pos >= len(buf):
        raise ValueError(f"ends inside an object at byte {pos}")
    b = buf[pos]
    pos += 1
    if b <= 0x7F or b >= 0xE0 or b in (0xC0, 0xC2, 0xC3):
        return pos
    if 0x80 <= b <= 0x8F or 0x90 <= b <= 0x9F or b in (0xDC, 0xDD, 0xDE, 0xDF):
        if b <= 0x9F:
            count = (b & 0x0F) * (2 if b <= 0x8F else 1)
        else:
            width = 2 if b in (0xDC, 0xDE) else 4
            count = int.from_bytes(_take(buf, pos, width), "big") * (2 if b >= 0xDE else 1)
            pos += width
        for _ in range(count):
            pos = _msgpack_item(buf, pos, depth + 1)
        return pos
    sizes = {0xCA: 4, 0xCB: 8, 0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8, 0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8,
             0xD4: 2, 0xD5: 3, 0xD6: 5, 0xD7: 9, 0xD8: 17}
    if b in sizes:
        _take(buf, pos, sizes[b])
        return pos + sizes[b]
    lengths = {0xC4: 1, 0xC5: 2, 0xC6: 4, 0xD9: 1, 0xDA: 2, 0xDB: 4, 0xC7: 1, 0xC8: 2, 0xC9: 4}
    if 0xA0 <= b <= 0xBF:
        size = b & 0x1F
    elif b in lengths:
        size = int.from_bytes(_take(buf, pos, lengths[b]), "big") + (1 if b in (0xC7, 0xC8, 0xC9) else 0)
        pos += lengths[b]
    else:
        raise ValueError(f"byte 0x{b:02x} at {pos - 1} starts no msgpack object")
    _take(buf, pos, size)
    return pos + size


def _take(buf, pos, n):
    if pos + n > len(buf):
        raise ValueError(f"ends inside an object at byte {pos}")
    return buf[pos:pos + n]


def check_msgpack(path, given_to=""):
    """One msgpack object, exactly to the end of the file (what flax.serialization writes)."""
    buf = Path(path).read_bytes()
    via = f" (given to {given_to})" if given_to else ""
    try:
        if not buf:
            raise ValueError("it is empty")
        end = _msgpack_item(buf, 0)
        if end != len(buf):
            raise ValueError(f"{len(buf) - end} bytes follow its object")
    except ValueError as exc:
        raise InputError(path, f"is not a msgpack file: truncated or corrupt ({exc}){via}") from None


# -- Darknet ---------------------------------------------------------------------------------------------------------
def darknet_sections(path):
    """[(section, {key: value}, line)] of a Darknet .cfg, every line checked."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError):
        raise InputError(path, "is not a Darknet .cfg (not a text file)") from None
    sections = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]") and len(line) > 2:
            sections.append((line[1:-1].strip(), {}, number))
            continue
        key, eq, value = line.partition("=")
        if not eq or not key.strip():
            raise InputError(path, f"line {number}: '{line[:60]}' is neither a [section] nor key=value (truncated?)")
        if not value.strip():
            raise InputError(path, f"line {number}: '{key.strip()}' has no value (truncated?)")
        if not sections:
            raise InputError(path, "is not a Darknet .cfg: it must start with a [net] section")
        sections[-1][1][key.strip()] = value.strip()
    if not sections or sections[0][0] not in ("net", "network"):
        raise InputError(path, "is not a Darknet .cfg: it must start with a [net] section")
    return sections


def check_darknet(path):
    _, net, line = darknet_sections(path)[0]
    dims = []
    for key in ("height", "width", "channels"):
        try:
            dims.append(int(net.get(key, "1")))
        except ValueError:
            raise InputError(path, f"[net] {key}={net[key]} is not a whole number") from None
    why = shapes.problem([1] + dims, unknown=())
    if why:
        given = " ".join(f"{k}={net[k]}" for k in ("width", "height", "channels") if k in net)
        raise InputError(path, f"[net] (line {line}) {given}: the input {shapes.describe([1] + dims)} {why}")


def check_darknet_weights(path):
    """A .weights file: its header (major, minor, revision, images seen), then whole float32 values."""
    size = Path(path).stat().st_size
    if size == 0:
        raise InputError(path, "is empty")
    with open(path, "rb") as fh:
        head = fh.read(12)
    if len(head) < 12:
        raise InputError(path, f"holds {size} bytes, shorter than a Darknet weights header")
    major, minor = int.from_bytes(head[0:4], "little"), int.from_bytes(head[4:8], "little")
    header = 20 if major * 10 + minor >= 2 and major < 1000 and minor < 1000 else 16
    if size < header or (size - header) % 4:
        raise InputError(path, f"holds {size - header} bytes after its {header}-byte header, not a whole number of "
                               "float32 values: truncated or corrupt")
