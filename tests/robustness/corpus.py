"""The bad-input corpus: one Case per way an input can be wrong, for every source format and for OUTPUT_DIR.

A case's `build(d, samples)` writes its input under `d / "in"` (copied from the session's samples and broken) and
returns the Run: the CLI's arguments, the exit code the README documents for it, what the one error line must name
(the user's file or folder, or the option) and a pattern its cause must match. test_robust_*.py run each case
through the real CLI and check that nothing was left behind."""

import gzip
import io
import json
import os
import random
import shutil
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import protowrite

CUTS = {"third": lambda b: len(b) // 3, "half": lambda b: len(b) // 2, "last-byte": lambda b: len(b) - 1}
BIG = 2 ** 31  # past TFLite's int32 dimensions
# odd file names: each is joined with a defect of the content, so the one error line has to carry the name
ODD_NAMES = {"non-utf8": os.fsdecode(b"model-\xff\xfe"), "quotes": "my 'model' \"v2\" $(id)", "newline": "mo\ndel",
             "dash": "-model"}

CORRUPT = r"truncated|corrupt|not a readable|cannot be read|incomplete|ends inside|runs past|not a valid"
SHAPE = r"dimension|shape|elements"
OUTSIDE = r"outside"
NOT_UTF8 = r"not UTF-8, which the Docker engine cannot mount"


def shown(text):
    """How the CLI prints a name in its one-line error: characters that are not printable escaped as in Python."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


@dataclass
class Run:
    argv: list
    names: tuple  # one of them must be in the error line (shown as the CLI shows names)
    cause: str  # a regular expression the line must match
    code: int = 2
    cwd: Path = None
    watch: tuple = ()  # folders outside the case folder that must be left exactly as they were
    cleanup: object = None  # called after the run (e.g. unmount)


@dataclass(frozen=True)
class Case:
    fmt: str  # the tally's format (a form of a format, e.g. "pytorch (TorchScript)")
    name: str
    build: object = field(compare=False)
    container: bool = False  # refused inside a step container (slow): run with --quiet

    @property
    def id(self):
        return f"{self.fmt}/{self.name}"


CASES = []


def case(fmt, name, container=False):
    def register(fn):
        CASES.append(Case(fmt, name, fn, container))
        return fn
    return register


def add(fmt, name, fn, container=False):
    CASES.append(Case(fmt, name, fn, container))


def given_as(fmt, name, sample, filename, argv, cause):
    """A case: a valid model of another format (`sample(s)`), given as `filename` under this FROM."""
    add(fmt, name, lambda d, s: Run(argv(copy(sample(s), d / "in" / filename), d / "out", s), (filename,), cause))


def cases_of(*fmts):
    return [c for c in CASES if c.fmt.split(" ")[0] in fmts]


# -- the session's valid models ------------------------------------------------------------------------------------
class Samples:
    """Paths into the session's `orchestrator sample` folders (tests/robustness/conftest.py makes them)."""

    def __init__(self, root):
        root = Path(root)
        self.root = root
        self.h5 = root / "keras-tf-keras" / "model.h5"
        self.keras = root / "keras-keras3" / "model.keras"
        self.keras_saved_model = root / "keras-tf-keras" / "keras_saved_model"
        self.saved_model = root / "keras-tf-keras" / "saved_model"
        self.frozen = root / "tf_frozen_model-cnn" / "frozen_model.pb"
        self.onnx = root / "onnx-lrn" / "model.onnx"
        self.torch = root / "pytorch-cnn"
        self.darknet = root / "darknet-yolov3-tiny"
        self.jax = root / "jax-dense"
        self.ssd = root / "ssd-float" / "ssd_model"
        self.ssd_tar = root / "ssd-float" / "ssd_model.tar.gz"
        self.tfjs_layers = root / "tfjs-layers"
        self.tfjs_graph = root / "tfjs-graph"


def _shape(dims):
    return {"dim": [{"size": str(d)} for d in dims]}


def layers_model_json(input_shape=(None, 4), shard="group1-shard1of1.bin", weights=None):
    """A TF.js layers model (Dense 4 -> 3), as tensorflowjs_converter writes one."""
    dense = {"name": "dense", "trainable": True, "dtype": "float32", "units": 3, "activation": "linear",
             "use_bias": True, "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
             "bias_initializer": {"class_name": "Zeros", "config": {}}, "kernel_regularizer": None,
             "bias_regularizer": None, "activity_regularizer": None, "kernel_constraint": None,
             "bias_constraint": None}
    layers = [{"class_name": "InputLayer", "config": {"batch_input_shape": list(input_shape), "dtype": "float32",
                                                      "sparse": False, "ragged": False, "name": "x"}},
              {"class_name": "Dense", "config": dense}]
    return {"format": "layers-model", "generatedBy": "keras v2.15.0", "convertedBy": "TensorFlow.js Converter v4.22.0",
            "modelTopology": {"keras_version": "2.15.0", "backend": "tensorflow",
                              "model_config": {"class_name": "Sequential", "config": {"name": "seq", "layers": layers}}},
            "weightsManifest": [{"paths": [shard], "weights": weights or [
                {"name": "dense/kernel", "shape": [4, 3], "dtype": "float32"},
                {"name": "dense/bias", "shape": [3], "dtype": "float32"}]}]}


def graph_model_json(input_dims=(-1, 4), shard="group1-shard1of1.bin", weights=None, extra_inputs=0):
    """A TF.js graph model (y = x @ w), with a signature, as tensorflowjs_converter writes one; `extra_inputs` more
    Placeholder inputs in the graph and the signature."""
    nodes = [{"name": "x", "op": "Placeholder", "attr": {"dtype": {"type": "DT_FLOAT"},
                                                         "shape": {"shape": _shape(input_dims)}}},
             {"name": "w", "op": "Const", "attr": {"dtype": {"type": "DT_FLOAT"}, "value": {"tensor": {
                 "dtype": "DT_FLOAT", "tensorShape": _shape((4, 3))}}}},
             {"name": "y", "op": "MatMul", "input": ["x", "w"],
              "attr": {"T": {"type": "DT_FLOAT"}, "transpose_a": {"b": False}, "transpose_b": {"b": False}}}]
    inputs = {"x:0": {"name": "x:0", "dtype": "DT_FLOAT", "tensorShape": _shape(input_dims)}}
    for i in range(extra_inputs):
        nodes.append({"name": f"i{i}", "op": "Placeholder", "attr": {"dtype": {"type": "DT_FLOAT"}}})
        inputs[f"i{i}:0"] = {"name": f"i{i}:0", "dtype": "DT_FLOAT"}
    return {"format": "graph-model", "generatedBy": "2.15.1", "convertedBy": "TensorFlow.js Converter v4.22.0",
            "modelTopology": {"node": nodes, "library": {}, "versions": {"producer": 1482}},
            "weightsManifest": [{"paths": [shard], "weights": weights or [
                {"name": "w", "shape": [4, 3], "dtype": "float32"}]}],
            "signature": {"inputs": inputs, "outputs": {"y:0": {"name": "y:0", "dtype": "DT_FLOAT",
                                                               "tensorShape": _shape((input_dims[0], 3))}}}}


def write_tfjs(folder, doc, shard_bytes=None):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.json").write_text(json.dumps(doc))
    if shard_bytes is not None:
        (folder / "group1-shard1of1.bin").write_bytes(shard_bytes)
    return folder / "model.json"


def make_tfjs_samples(root):
    """Valid TF.js models, written as the converter writes them (small enough to write by hand)."""
    write_tfjs(Path(root) / "tfjs-layers", layers_model_json(), bytes(range(60)))
    write_tfjs(Path(root) / "tfjs-graph", graph_model_json(), bytes(range(48)))


# -- writing inputs ------------------------------------------------------------------------------------------------
def put(path, data):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def copy(src, dst):
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if Path(src).is_dir():
        shutil.copytree(src, dst, symlinks=True)
    else:
        shutil.copyfile(src, dst)
    return dst


def noise(n=4096, seed=0):
    return random.Random(seed).randbytes(n)


def cut(path, where, cuts=CUTS):
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[:cuts[where](data)])
    return path


def resize(path, delta):
    """A file `delta` bytes longer (zeros appended) or shorter."""
    data = Path(path).read_bytes()
    Path(path).write_bytes(data + bytes(delta) if delta > 0 else data[:delta])
    return path


def convert(fmt, model, out, *flags):
    return ["convert", fmt, str(model), str(out), *map(str, flags)]


def odd_cause(kind, cause):
    """What the line says of an odd name joined with a defect: a name that is not UTF-8 is refused first (the Docker
    engine cannot mount it), the defect otherwise."""
    return NOT_UTF8 if kind == "non-utf8" else cause


def odd(d, kind, suffix):
    """A path in the case's input folder with an odd name; (path as given on the command line, cwd)."""
    path = d / "in" / (ODD_NAMES[kind] + suffix)
    if kind == "dash":  # given bare, as a user types it in the folder
        return path, path.name, path.parent
    return path, str(path), None


# -- generic defects of a one-file input ----------------------------------------------------------------------------
def file_defects(fmt, suffix, sample, argv, bad_content=r"not a|no .*signature", cuts=CUTS, cut_cause=CORRUPT):
    """empty, cut at several points, random bytes (right extension), odd names: `sample(s)` is a valid file of the
    format, `argv(model, out, s)` the command line."""

    def empty(d, s):
        model = put(d / "in" / f"model{suffix}", b"")
        return Run(argv(model, d / "out", s), (model.name,), r"is empty")

    def truncated(where):
        def build(d, s):
            model = cut(copy(sample(s), d / "in" / f"model{suffix}"), where, cuts)
            return Run(argv(model, d / "out", s), (model.name,), cut_cause)
        return build

    def random_bytes(d, s):
        model = put(d / "in" / f"model{suffix}", noise())
        return Run(argv(model, d / "out", s), (model.name,), bad_content)

    def odd_name(kind, content):
        def build(d, s):
            path, given, cwd = odd(d, kind, suffix)
            if content == "truncated":
                cut(copy(sample(s), path), "half", cuts)
            else:
                put(path, b"" if content == "empty" else noise(seed=1))
            return Run(argv(given, d / "out", s), (shown(path.name),),
                       odd_cause(kind, {"empty": "is empty", "truncated": cut_cause, "random": bad_content}[content]),
                       cwd=cwd)
        return build

    add(fmt, "empty", empty)
    for where in cuts:
        add(fmt, f"truncated-{where}", truncated(where))
    add(fmt, "random-bytes", random_bytes)
    for kind, content in zip(ODD_NAMES, ("empty", "random", "truncated", "empty")):
        add(fmt, f"name-{kind}", odd_name(kind, content))


# -- keras: .h5 ----------------------------------------------------------------------------------------------------
def keras_argv(model, out, s):
    return convert("keras", model, out)


file_defects("keras (.h5)", ".h5", lambda s: s.h5, keras_argv, r"not a Keras model|no HDF5 signature")


given_as("keras (.h5)", "other-format-onnx", lambda s: s.onnx, "model.h5", keras_argv, r"not a Keras model|ONNX")


@case("keras (.h5)", "weights-only-hdf5")
def _(d, s):
    import h5py
    import numpy as np

    model = d / "in" / "model.h5"
    model.parent.mkdir(parents=True)
    with h5py.File(model, "w") as f:
        f.create_dataset("dense/kernel", data=np.zeros((4, 3), "float32"))
    return Run(keras_argv(model, d / "out", s), ("model.h5",), r"no model_config|weights")


def keras_h5_shape(dim):
    def build(d, s):
        import h5py

        model = copy(s.h5, d / "in" / "model.h5")
        with h5py.File(model, "r+") as f:
            config = json.loads(f.attrs["model_config"])
            layer = config["config"]["layers"][0]["config"]
            key = "batch_shape" if "batch_shape" in layer else "batch_input_shape"
            layer[key] = [None, 32, dim, 3]
            f.attrs["model_config"] = json.dumps(config)
        return Run(keras_argv(model, d / "out", s), ("model.h5",), SHAPE)
    return build


for _dim in (0, -1, BIG):
    add("keras (.h5)", f"shape-{_dim}", keras_h5_shape(_dim))


# -- keras: .keras -------------------------------------------------------------------------------------------------
file_defects("keras (.keras)", ".keras", lambda s: s.keras, keras_argv, r"not a Keras model|not a zip|no HDF5")


def rezip(src, dst, drop=(), replace=None):
    """A copy of zip archive `src` without the members `drop`, with `replace` {name: bytes}."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            if name not in drop:
                zout.writestr(name, (replace or {}).get(name, zin.read(name)))
    return dst


given_as("keras (.keras)", "other-format-hdf5", lambda s: s.h5, "model.keras", keras_argv, r"HDF5|not a zip|\.h5")
given_as("keras (.keras)", "other-format-pytorch-zip", lambda s: s.torch / "state_dict.pt", "model.keras", keras_argv,
         r"PyTorch|not a Keras")


@case("keras (.keras)", "missing-weights-member")
def _(d, s):
    model = rezip(s.keras, d / "in" / "model.keras", drop=("model.weights.h5",))
    return Run(keras_argv(model, d / "out", s), ("model.keras",), r"model\.weights\.h5")


@case("keras (.keras)", "truncated-weights-member")
def _(d, s):
    with zipfile.ZipFile(s.keras) as z:
        weights = z.read("model.weights.h5")
    model = rezip(s.keras, d / "in" / "model.keras", replace={"model.weights.h5": weights[:len(weights) // 2]})
    return Run(keras_argv(model, d / "out", s), ("model.keras", "model.weights.h5"), CORRUPT)


def keras_zip_shape(dim):
    def build(d, s):
        with zipfile.ZipFile(s.keras) as z:
            config = json.loads(z.read("config.json"))
        config["config"]["layers"][0]["config"]["batch_shape"] = [None, dim, 32, 3]
        model = rezip(s.keras, d / "in" / "model.keras", replace={"config.json": json.dumps(config).encode()})
        return Run(keras_argv(model, d / "out", s), ("model.keras",), SHAPE)
    return build


for _dim in (0, BIG):
    add("keras (.keras)", f"shape-{_dim}", keras_zip_shape(_dim))


# -- SavedModel folders: keras_saved_model, tf_saved_model, tf_hub ---------------------------------------------------
SAVED_MODELS = {"keras_saved_model": lambda s: s.keras_saved_model, "tf_saved_model": lambda s: s.saved_model,
                "tf_hub": lambda s: s.saved_model}
DATA = "variables/variables.data-00000-of-00001"


def saved_model_cases(fmt, sample):
    def run(model, d, names, cause, cwd=None):
        return Run(convert(fmt, model, d / "out"), names, cause, cwd=cwd)

    def folder(d, s):
        return copy(sample(s), d / "in" / "model")

    def empty_folder(d, s):
        (d / "in" / "model").mkdir(parents=True)
        return run(d / "in" / "model", d, ("model",), r"no saved_model\.pb")

    def pb(edit, cause):
        def build(d, s):
            model = folder(d, s)
            edit(model / "saved_model.pb")
            return run(model, d, ("saved_model.pb",), cause)
        return build

    def companion(edit, names, cause):
        def build(d, s):
            model = folder(d, s)
            edit(model, d)
            return run(model, d, names, cause)
        return build

    def symlinked(model, d):
        outside = copy(model / DATA, d / "elsewhere" / "data")
        (model / DATA).unlink()
        (model / DATA).symlink_to(outside)

    def other_format(d, s):
        model = copy(s.tfjs_graph, d / "in" / "model")
        copy(s.h5, model / "model.h5")
        return run(model, d, ("model",), r"no saved_model\.pb")

    def given_a_file(d, s):
        model = copy(s.h5, d / "in" / "model.h5")
        return run(model, d, ("model.h5",), r"is a file")

    def odd_name(kind):
        def build(d, s):
            path, given, cwd = odd(d, kind, "")
            copy(sample(s), path)
            put(path / "saved_model.pb", noise(seed=2))
            return run(given, d, (shown(path.name),), odd_cause(kind, CORRUPT + "|not a SavedModel"), cwd)
        return build

    add(fmt, "empty-folder", empty_folder)
    add(fmt, "saved_model.pb-empty", pb(lambda p: p.write_bytes(b""), r"is empty"))
    for where in ("half", "last-byte"):
        add(fmt, f"saved_model.pb-truncated-{where}", pb(lambda p, w=where: cut(p, w), CORRUPT + "|not a SavedModel"))
    add(fmt, "saved_model.pb-random-bytes", pb(lambda p: p.write_bytes(noise()), CORRUPT + "|not a SavedModel"))
    add(fmt, "other-format-tfjs-and-h5", other_format)
    add(fmt, "given-a-file", given_a_file)
    add(fmt, "missing-variables-index", companion(lambda m, d: (m / "variables/variables.index").unlink(),
                                                  ("variables.index", "variables"), r"missing|no "))
    add(fmt, "missing-variables-data", companion(lambda m, d: (m / DATA).unlink(),
                                                 ("variables.data-00000-of-00001",), r"missing|no "))
    add(fmt, "variables-data-one-byte-short", companion(lambda m, d: resize(m / DATA, -1),
                                                        ("variables.data-00000-of-00001",), r"bytes"))
    add(fmt, "variables-data-one-byte-long", companion(lambda m, d: resize(m / DATA, 1),
                                                       ("variables.data-00000-of-00001",), r"bytes"))
    add(fmt, "variables-index-truncated", companion(lambda m, d: cut(m / "variables/variables.index", "half"),
                                                    ("variables.index",), CORRUPT))
    add(fmt, "symlink-outside", companion(symlinked, ("variables.data-00000-of-00001",), OUTSIDE))
    for kind in ("newline", "non-utf8", "dash"):
        add(fmt, f"name-{kind}", odd_name(kind))


for _fmt, _sample in SAVED_MODELS.items():
    saved_model_cases(_fmt, _sample)


given_as("keras_saved_model", "other-format-plain-saved-model", lambda s: s.saved_model, "model",
         lambda model, out, s: convert("keras_saved_model", model, out), r"keras_metadata")


@case("tf_hub", "url")
def _(d, s):
    return Run(convert("tf_hub", "https://example.com/models/classifier/1", d / "out"),
               ("https://example.com/models/classifier/1",), r"URL")


# -- tf_frozen_model -------------------------------------------------------------------------------------------------
def frozen_argv(model, out, s, shapes=None):
    flags = ["--input_arrays", "image", "--output_arrays", "Identity"]
    return convert("tf_frozen_model", model, out, *flags, *(["--input_shapes", shapes] if shapes else []))


file_defects("tf_frozen_model", ".pb", lambda s: s.frozen, frozen_argv, r"not a|GraphDef")


given_as("tf_frozen_model", "other-format-onnx", lambda s: s.onnx, "model.pb", frozen_argv, r"ONNX model, not a frozen")
given_as("tf_frozen_model", "other-format-saved-model-pb", lambda s: s.saved_model / "saved_model.pb", "model.pb",
         frozen_argv, r"SavedModel's saved_model\.pb, not a frozen")


for _shapes in ("1,32,0,3", "-1,32,32,3", f"1,{BIG},32,3"):
    add("tf_frozen_model", f"input-shapes-{_shapes}", lambda d, s, sh=_shapes: Run(
        frozen_argv(copy(s.frozen, d / "in" / "model.pb"), d / "out", s, sh), ("--input_shapes",), SHAPE))


# -- TF.js layers and graph models -----------------------------------------------------------------------------------
TFJS = {"tfjs_layers_model": (lambda s: s.tfjs_layers, layers_model_json),
        "tfjs_graph_model": (lambda s: s.tfjs_graph, graph_model_json)}


# a modelTopology with a member of the wrong JSON type (what a hand edit or a broken converter leaves)
MALFORMED = {"tfjs_layers_model": {"model_config": {"class_name": "Sequential", "config": {"layers": "dense"}}},
             "tfjs_graph_model": {"node": [{"name": "x", "op": "Placeholder", "attr": ["dtype"]}]}}


def tfjs_cases(fmt, sample, model_json):
    other = "tfjs_graph_model" if fmt == "tfjs_layers_model" else "tfjs_layers_model"

    def run(model, d, names, cause, cwd=None):
        return Run(convert(fmt, model, d / "out"), names, cause, cwd=cwd)

    def folder(d, s):
        return copy(sample(s), d / "in" / "model") / "model.json"

    def json_defect(edit, cause):
        def build(d, s):
            model = folder(d, s)
            edit(model)
            return run(model, d, ("model.json",), cause)
        return build

    def manifest(doc_kw=None, shard=None, names=("model.json",), cause=r"", prepare=None):
        """model.json rewritten by model_json(**doc_kw), with `shard` bytes (None: the sample's)."""
        def build(d, s):
            model = folder(d, s)
            write_tfjs(model.parent, model_json(**(doc_kw or {})), shard)
            if prepare:
                prepare(model.parent, d)
            return run(model, d, names, cause)
        return build

    def resized(delta):
        return lambda folder, d: resize(folder / "group1-shard1of1.bin", delta)

    def symlinked(folder, d):
        outside = copy(folder / "group1-shard1of1.bin", d / "elsewhere" / "shard.bin")
        (folder / "group1-shard1of1.bin").unlink()
        (folder / "group1-shard1of1.bin").symlink_to(outside)

    def other_format(d, s):
        model = copy(TFJS[other][0](s), d / "in" / "model") / "model.json"
        return run(model, d, ("model.json",), r"is a TensorFlow\.js")

    def hdf5_as_json(d, s):
        model = copy(s.h5, d / "in" / "model.json")
        return run(model, d, ("model.json",), r"not valid JSON|not a TensorFlow\.js|UTF-8")

    def many_inputs(d, s):
        model = d / "in" / "model" / "model.json"
        if fmt == "tfjs_graph_model":
            doc = graph_model_json(extra_inputs=10 ** 6)
        else:
            doc = layers_model_json()
            doc["modelTopology"]["model_config"]["config"]["input_layers"] = [[f"i{i}", 0, 0] for i in range(10 ** 6)]
        write_tfjs(model.parent, doc, bytes(range(48 if fmt == "tfjs_graph_model" else 60)))
        return run(model, d, ("model.json",), r"inputs")

    def odd_name(kind):
        def build(d, s):
            path, given, cwd = odd(d, kind, ".json")
            copy(sample(s), path.parent)
            (path.parent / "model.json").rename(path)
            path.write_text(path.read_text()[:100])
            return run(given, d, (shown(path.name),), r"not valid JSON", cwd)
        return build

    def odd_shard(d, s):
        model = folder(d, s)
        write_tfjs(model.parent, model_json(shard="sh\nard.bin"))
        return run(model, d, (shown("sh\nard.bin"),), r"missing")

    add(fmt, "empty", json_defect(lambda p: p.write_bytes(b""), r"not valid JSON|is empty"))
    for where in CUTS:
        add(fmt, f"truncated-{where}", json_defect(lambda p, w=where: cut(p, w), r"not valid JSON"))
    add(fmt, "random-bytes", json_defect(lambda p: p.write_bytes(noise()), r"not valid JSON|UTF-8"))
    add(fmt, f"other-format-{other}", other_format)
    add(fmt, "other-format-hdf5", hdf5_as_json)
    add(fmt, "missing-shard", json_defect(lambda p: (p.parent / "group1-shard1of1.bin").unlink(),
                                          r"group1-shard1of1\.bin.*missing"))
    add(fmt, "shard-one-byte-short", manifest(prepare=resized(-1), cause=r"bytes"))
    add(fmt, "shard-one-byte-long", manifest(prepare=resized(1), cause=r"bytes"))
    add(fmt, "manifest-dtype-float64", manifest(
        {"weights": [{"name": "w", "shape": [4, 3], "dtype": "float64"}, {"name": "b", "shape": [3], "dtype": "float32"}]},
        cause=r"dtype 'float64'"))
    add(fmt, "manifest-shape-negative", manifest(
        {"weights": [{"name": "w", "shape": [-1, 3], "dtype": "float32"}]}, cause=SHAPE))
    add(fmt, "manifest-shape-not-a-number", manifest(
        {"weights": [{"name": "w", "shape": ["four", 3], "dtype": "float32"}]}, cause=SHAPE))
    add(fmt, "manifest-not-a-list", json_defect(
        lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "weightsManifest": {"paths": 1}})),
        r"weightsManifest"))
    add(fmt, "weight-path-dotdot", manifest({"shard": "../group1-shard1of1.bin"}, cause=OUTSIDE,
                                            prepare=lambda f, d: copy(f / "group1-shard1of1.bin",
                                                                      f.parent / "group1-shard1of1.bin")))
    add(fmt, "weight-path-absolute", manifest({"shard": "/etc/hostname"}, cause=OUTSIDE + "|absolute"))
    add(fmt, "weight-path-url", manifest({"shard": "https://example.com/group1-shard1of1.bin"}, cause=r"URL"))
    add(fmt, "shard-symlink-outside", manifest(prepare=symlinked, cause=OUTSIDE))
    add(fmt, "shard-name-newline", odd_shard)
    add(fmt, "topology-malformed", json_defect(lambda p: p.write_text(json.dumps(
        {**json.loads(p.read_text()), "modelTopology": MALFORMED[fmt]})), r"malformed|not a TensorFlow\.js"))
    add(fmt, "inputs-1000000", many_inputs)
    for dim in (0, -2 if fmt == "tfjs_graph_model" else -1, BIG):
        kw = {"input_dims": (1, dim)} if fmt == "tfjs_graph_model" else {"input_shape": (None, dim)}
        add(fmt, f"input-shape-{dim}", manifest(kw, cause=SHAPE))
    for kind in ("newline", "quotes"):
        add(fmt, f"name-{kind}", odd_name(kind))


for _fmt, (_sample, _json) in TFJS.items():
    tfjs_cases(_fmt, _sample, _json)


# -- onnx --------------------------------------------------------------------------------------------------------------
def onnx_argv(model, out, s):
    return convert("onnx", model, out)


file_defects("onnx", ".onnx", lambda s: s.onnx, onnx_argv, r"not an ONNX model")


given_as("onnx", "other-format-pytorch", lambda s: s.torch / "model.pt", "model.onnx", onnx_argv, r"PyTorch")
given_as("onnx", "other-format-frozen-graph", lambda s: s.frozen, "model.onnx", onnx_argv, r"not an ONNX")


def onnx_external(location="weights.bin", data=bytes(48), length="48", cause=r"", names=("weights.bin",)):
    def build(d, s):
        model = put(d / "in" / "model.onnx", protowrite.onnx_model(
            external={"location": location, "offset": "0", "length": length}))
        if data is not None:
            put(d / "in" / "weights.bin", data)
        return Run(onnx_argv(model, d / "out", s), names, cause)
    return build


add("onnx", "external-data-missing", onnx_external(data=None, cause=r"missing|no such"))
add("onnx", "external-data-short", onnx_external(data=bytes(47), cause=r"bytes"))
add("onnx", "external-data-dotdot", onnx_external(location="../weights.bin", cause=OUTSIDE,
                                                  names=("../weights.bin", "model.onnx")))
add("onnx", "external-data-absolute", onnx_external(location="/etc/hostname", cause=OUTSIDE + "|absolute",
                                                    names=("/etc/hostname", "model.onnx")))
for _dim in (0, -1, BIG):
    add("onnx", f"input-shape-{_dim}", lambda d, s, dim=_dim: Run(
        onnx_argv(put(d / "in" / "model.onnx", protowrite.onnx_model(input_dims=(1, dim))), d / "out", s),
        ("model.onnx",), SHAPE))


# -- pytorch, each form ------------------------------------------------------------------------------------------------
TORCH_FORMS = {"TorchScript": "model.pt", "ExportedProgram": "model.pt2", "state_dict": "state_dict.pt",
               "pickled module": "module.pt"}


def torch_argv(form, shape="1,3,32,32"):
    def argv(model, out, s):
        code = ["--model-code", f"{s.torch / 'net.py'}:SmallCNN"] if form in ("state_dict", "pickled module") else []
        return convert("pytorch", model, out, "--input-shape", shape, *code)
    return argv


for _form, _file in TORCH_FORMS.items():
    _fmt = f"pytorch ({_form})"
    _suffix = Path(_file).suffix
    file_defects(_fmt, _suffix, lambda s, f=_file: s.torch / f, torch_argv(_form),
                 r"not a PyTorch file|neither a zip|loading it failed")
    given_as(_fmt, "other-format-keras", lambda s: s.keras, f"model{_suffix}", torch_argv(_form),
             r"Keras \.keras archive, not a PyTorch")
    given_as(_fmt, "other-format-onnx", lambda s: s.onnx, f"model{_suffix}", torch_argv(_form), r"ONNX model")

for _torch_shape in ("0,3,32,32", "1,3,-1,32", f"1,3,{BIG},32"):
    add("pytorch (TorchScript)", f"input-shape-{_torch_shape}", lambda d, s, sh=_torch_shape: Run(
        torch_argv("TorchScript", sh)(copy(s.torch / "model.pt", d / "in" / "model.pt"), d / "out", s),
        ("--input_shape", "--input-shape"), SHAPE))


def state_dict_with_code(code, attr="SmallCNN", cause=r"", names=("net.py",)):
    def build(d, s):
        model = copy(s.torch / "state_dict.pt", d / "in" / "state_dict.pt")
        net = put(d / "in" / "net.py", code(s.torch / "net.py")) if code else d / "in" / "net.py"
        return Run(convert("pytorch", model, d / "out", "--input-shape", "1,3,32,32", "--model-code", f"{net}:{attr}"),
                   names, cause)
    return build


add("pytorch (state_dict)", "model-code-missing-file", state_dict_with_code(None, cause=r"no such file"))
add("pytorch (state_dict)", "model-code-syntax-error", state_dict_with_code(
    lambda p: p.read_text()[:len(p.read_text()) // 2] + "\ndef (:\n", cause=r"SyntaxError|syntax"))
add("pytorch (state_dict)", "model-code-no-such-class", state_dict_with_code(
    lambda p: p.read_text(), attr="NoSuchNet", cause=r"NoSuchNet"))
add("pytorch (state_dict)", "model-code-raises-on-import", state_dict_with_code(
    lambda p: p.read_text() + "\nraise RuntimeError('broken on import')\n", cause=r"broken on import"),
    container=True)


@case("pytorch (state_dict)", "no-model-code", container=True)
def _(d, s):
    model = copy(s.torch / "state_dict.pt", d / "in" / "state_dict.pt")
    return Run(convert("pytorch", model, d / "out", "--input-shape", "1,3,32,32"), ("state_dict.pt",),
               r"--model.code")


# -- darknet ---------------------------------------------------------------------------------------------------------
def darknet_argv(model, out, s, weights=None):
    return convert("darknet", model, out, "--weights", weights or s.darknet / "model.weights")


# a cfg cut between two sections is another valid cfg (its weights then do not fit: darknet-weights cases); these
# cuts land inside a `key=value` line
DARKNET_CUTS = {"third": lambda b: b.index(b"=", len(b) // 3) - 2, "half": lambda b: b.index(b"=", len(b) // 2) + 1,
                "last-line": lambda b: b.rindex(b"=") + 1}
file_defects("darknet", ".cfg", lambda s: s.darknet / "model.cfg", darknet_argv,
             r"not a Darknet|\[net\]|text file", cuts=DARKNET_CUTS, cut_cause=r"line \d+")


def darknet_cfg(edit, cause, names=("model.cfg",)):
    def build(d, s):
        model = put(d / "in" / "model.cfg", edit((s.darknet / "model.cfg").read_text()))
        return Run(darknet_argv(model, d / "out", s), names, cause)
    return build


def darknet_weights(edit, cause):
    def build(d, s):
        model = copy(s.darknet / "model.cfg", d / "in" / "model.cfg")
        weights = copy(s.darknet / "model.weights", d / "in" / "model.weights")
        edit(weights)
        return Run(darknet_argv(model, d / "out", s, weights), ("model.weights",), cause)
    return build


given_as("darknet", "other-format-keras", lambda s: s.h5, "model.cfg", darknet_argv, r"not a Darknet")
add("darknet", "cfg-cut-mid-line", darknet_cfg(lambda t: t[:t.index("filters=") + 4], r"line \d+"))
add("darknet", "cfg-key-without-value", darknet_cfg(lambda t: t[:t.index("filters=") + 8], r"line \d+"))
add("darknet", "missing-weights-option", lambda d, s: Run(
    convert("darknet", copy(s.darknet / "model.cfg", d / "in" / "model.cfg"), d / "out"), ("model.cfg",),
    r"--weights"))
add("darknet", "missing-weights-file", lambda d, s: Run(
    darknet_argv(copy(s.darknet / "model.cfg", d / "in" / "model.cfg"), d / "out", s, d / "in" / "model.weights"),
    ("model.weights",), r"no such file"))
add("darknet", "weights-empty", darknet_weights(lambda w: w.write_bytes(b""), r"empty"))
add("darknet", "weights-one-byte-short", darknet_weights(lambda w: resize(w, -1), r"bytes|whole number"))
add("darknet", "weights-one-float-long", darknet_weights(lambda w: resize(w, 4), r"too long|left over"),
    container=True)
for _key, _value in (("width", 0), ("height", -1), ("channels", BIG)):
    add("darknet", f"net-{_key}-{_value}", darknet_cfg(
        lambda t, k=_key, v=_value: "\n".join(f"{k}={v}" if ln.startswith(f"{k}=") else ln for ln in t.splitlines()),
        rf"{_key}"))


# -- jax -------------------------------------------------------------------------------------------------------------
def jax_argv(model, out, s, signature="1,4:float32", params=None):
    ref = f"{model}:build"
    return convert("jax", ref, out, "--input-signature", signature, *(["--params", params] if params else []))


def jax_module(edit, cause, names=("module.py",)):
    def build(d, s):
        model = put(d / "in" / "module.py", edit((s.jax / "module.py").read_text()))
        return Run(jax_argv(model, d / "out", s), names, cause)
    return build


add("jax", "empty", lambda d, s: Run(jax_argv(put(d / "in" / "module.py", b""), d / "out", s), ("module.py",),
                                     r"is empty|no .build."))
add("jax", "truncated-half", jax_module(lambda t: t[:len(t) // 2], r"SyntaxError|syntax|no .build."))
add("jax", "truncated-mid-def", jax_module(lambda t: t[:t.index("def build") + 12], r"SyntaxError|syntax"))
add("jax", "random-bytes", lambda d, s: Run(jax_argv(put(d / "in" / "module.py", noise()), d / "out", s),
                                            ("module.py",), r"UTF-8|not a Python|SyntaxError"))
add("jax", "other-format-keras", lambda d, s: Run(jax_argv(copy(s.h5, d / "in" / "model.h5"), d / "out", s),
                                                  ("model.h5",), r"not a Python file"))
add("jax", "no-such-function", jax_module(lambda t: t.replace("def build", "def make"), r"no .build.|build"))
add("jax", "params-missing", lambda d, s: Run(
    jax_argv(copy(s.jax / "module.py", d / "in" / "module.py"), d / "out", s, params=d / "in" / "params.msgpack"),
    ("params.msgpack",), r"no such file"))
for _where in ("half", "last-byte"):
    add("jax", f"params-truncated-{_where}", lambda d, s, w=_where: Run(
        jax_argv(copy(s.jax / "module.py", d / "in" / "module.py"), d / "out", s,
                 params=cut(copy(s.jax / "params.msgpack", d / "in" / "params.msgpack"), w)),
        ("params.msgpack",), CORRUPT + "|msgpack"))
for _sig in ("0,4:float32", "-1,4:float32", f"{BIG},4:float32"):
    add("jax", f"signature-{_sig}", lambda d, s, sig=_sig: Run(
        jax_argv(copy(s.jax / "module.py", d / "in" / "module.py"), d / "out", s, signature=sig),
        ("--input_signature", "--input-signature"), SHAPE + "|SHAPE:DTYPE"))
for _kind in ("newline", "dash", "non-utf8"):
    def _jax_odd(d, s, kind=_kind):
        path, given, cwd = odd(d, kind, ".py")
        put(path, (s.jax / "module.py").read_text()[:40])
        return Run(jax_argv(given, d / "out", s), (shown(path.name),), odd_cause(kind, r"no .build."), cwd=cwd)
    add("jax", f"name-{_kind}", _jax_odd)


# -- ssd: a model-zoo folder ---------------------------------------------------------------------------------------
def ssd_run(model, d, names, cause, cwd=None, **kw):
    return Run(convert("ssd", model, d / "out"), names, cause, cwd=cwd, **kw)


def ssd_folder(edit, names, cause):
    def build(d, s):
        model = copy(s.ssd, d / "in" / "ssd_model")
        edit(model, d)
        return ssd_run(model, d, names, cause)
    return build


def pipeline(edit):
    def apply(model, d):
        config = model / "pipeline.config"
        config.write_text(edit(config.read_text()))
    return apply


def ssd_symlinked(model, d):
    data = model / "model.ckpt.data-00000-of-00001"
    outside = copy(data, d / "elsewhere" / "data")
    data.unlink()
    data.symlink_to(outside)


SSD_DATA = "model.ckpt.data-00000-of-00001"
add("ssd (folder)", "empty-folder", lambda d, s: ssd_run(
    (d / "in" / "ssd_model").mkdir(parents=True) or d / "in" / "ssd_model", d, ("ssd_model",), r"pipeline\.config"))
add("ssd (folder)", "pipeline-empty", ssd_folder(pipeline(lambda t: ""), ("pipeline.config",), r"empty|no model"))
add("ssd (folder)", "pipeline-truncated-half", ssd_folder(pipeline(lambda t: t[:len(t) // 2]), ("pipeline.config",),
                                                          r"truncated|unbalanced|braces|no model|not a valid"))
add("ssd (folder)", "pipeline-random-bytes", ssd_folder(lambda m, d: put(m / "pipeline.config", noise()),
                                                        ("pipeline.config",), r"UTF-8|cannot read|not a text"))
add("ssd (folder)", "other-format-saved-model", lambda d, s: ssd_run(
    copy(s.saved_model, d / "in" / "ssd_model"), d, ("ssd_model",), r"pipeline\.config"))
add("ssd (folder)", "missing-pipeline", ssd_folder(lambda m, d: (m / "pipeline.config").unlink(), ("ssd_model",),
                                                   r"pipeline\.config"))
add("ssd (folder)", "missing-checkpoint-index", ssd_folder(lambda m, d: (m / "model.ckpt.index").unlink(),
                                                           ("ssd_model",), r"checkpoint|\.index"))
add("ssd (folder)", "missing-checkpoint-data", ssd_folder(lambda m, d: (m / SSD_DATA).unlink(),
                                                          ("model.ckpt",), r"\.data"))
add("ssd (folder)", "checkpoint-data-one-byte-short", ssd_folder(lambda m, d: resize(m / SSD_DATA, -1), (SSD_DATA,),
                                                                 r"bytes"))
add("ssd (folder)", "checkpoint-data-one-byte-long", ssd_folder(lambda m, d: resize(m / SSD_DATA, 1), (SSD_DATA,),
                                                                r"bytes"))
add("ssd (folder)", "checkpoint-index-random", ssd_folder(lambda m, d: put(m / "model.ckpt.index", noise()),
                                                          ("model.ckpt.index",), CORRUPT))
add("ssd (folder)", "symlink-outside", ssd_folder(ssd_symlinked, (SSD_DATA,), OUTSIDE))
add("ssd (folder)", "pipeline-unknown-field", ssd_folder(
    pipeline(lambda t: t.replace("num_classes:", "bogus_field: 3\n    num_classes:", 1)), ("pipeline.config",),
    r"bogus_field"), container=True)
add("ssd (folder)", "pipeline-huge-num-classes", ssd_folder(
    pipeline(lambda t: t.replace("num_classes: 3", "num_classes: 1000000000", 1)), ("pipeline.config",),
    r"num_classes"))
add("ssd (folder)", "pipeline-height-0", ssd_folder(
    pipeline(lambda t: t.replace("height: 160", "height: 0", 1)), ("pipeline.config",), r"height"))
add("ssd (folder)", "pipeline-width-2^31", ssd_folder(
    pipeline(lambda t: t.replace("width: 160", f"width: {BIG}", 1)), ("pipeline.config",), r"width"))
for _kind in ("newline", "non-utf8"):
    def _ssd_odd(d, s, kind=_kind):
        path, given, cwd = odd(d, kind, "")
        copy(s.ssd, path)
        (path / "pipeline.config").unlink()
        return ssd_run(given, d, (shown(path.name),), odd_cause(kind, r"pipeline\.config"), cwd=cwd)
    add("ssd (folder)", f"name-{_kind}", _ssd_odd)


# -- ssd: the model-zoo .tar.gz ------------------------------------------------------------------------------------
def tar_with(extra, cause):
    """A .tar.gz of the sample SSD folder followed by the members `extra(tar)` adds (uncompressed first: a member
    can be written byte by byte)."""
    def build(d, s):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
            tar.add(s.ssd, arcname="ssd_model")
            extra(tar)
            end = tar.offset
        model = put(d / "in" / "ssd_model.tar.gz", gzip.compress(buf.getvalue()[:end] + bytes(1024), 1))
        return ssd_run(model, d, ("ssd_model.tar.gz",), cause)
    return build


def member(name, type_=tarfile.REGTYPE, data=b"", **kw):
    def add_member(tar):
        info = tarfile.TarInfo(name)
        info.type, info.size = type_, len(data) if type_ == tarfile.REGTYPE else 0
        for key, value in kw.items():
            setattr(info, key, value)
        tar.addfile(info, io.BytesIO(data) if type_ == tarfile.REGTYPE else None)
    return add_member


def sparse_bomb(tar):
    """A GNU sparse member of 10 GB that stores no data: 10 GB of zeros once unpacked (a decompression bomb)."""
    info = tarfile.TarInfo("ssd_model/huge.bin")
    info.type = tarfile.GNUTYPE_SPARSE
    header = bytearray(info.tobuf(tarfile.GNU_FORMAT))
    header[483:495] = b"%012o" % (10 * 10 ** 9)  # realsize; the sparse map (offset 386) is empty: all of it a hole
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header[:512])
    tar.fileobj.write(bytes(header))
    tar.offset += len(header)


def tar_cases():
    fmt = "ssd (.tar.gz)"

    def tarball(edit, cause, names=("ssd_model.tar.gz",)):
        def build(d, s):
            model = copy(s.ssd_tar, d / "in" / "ssd_model.tar.gz")
            edit(model)
            return ssd_run(model, d, names, cause)
        return build

    readable = r"not a readable tarball|truncated|corrupt"
    add(fmt, "empty", tarball(lambda p: p.write_bytes(b""), r"is empty|not a readable"))
    for where in CUTS:
        add(fmt, f"truncated-{where}", tarball(lambda p, w=where: cut(p, w), readable))
    add(fmt, "random-bytes", tarball(lambda p: p.write_bytes(noise()), readable))
    add(fmt, "other-format-onnx", lambda d, s: ssd_run(copy(s.onnx, d / "in" / "ssd_model.tar.gz"), d,
                                                       ("ssd_model.tar.gz",), readable))
    add(fmt, "member-dotdot", tar_with(member("ssd_model/../../evil.txt", data=b"x"), r"evil\.txt.*outside"))
    add(fmt, "member-absolute", tar_with(member("/tmp/evil.txt", data=b"x"), r"/tmp/evil\.txt.*outside"))
    add(fmt, "member-symlink", tar_with(member("ssd_model/link", tarfile.SYMTYPE, linkname="/etc/passwd"), r"link"))
    add(fmt, "member-hardlink", tar_with(member("ssd_model/hard", tarfile.LNKTYPE,
                                                linkname="ssd_model/pipeline.config"), r"link"))
    add(fmt, "member-device", tar_with(member("ssd_model/null", tarfile.CHRTYPE, devmajor=1, devminor=3),
                                       r"special file|device"))
    add(fmt, "member-fifo", tar_with(member("ssd_model/fifo", tarfile.FIFOTYPE), r"special file|FIFO"))
    add(fmt, "sparse-10GB-bomb", tar_with(sparse_bomb, r"GB|bytes|sparse"))
    add(fmt, "no-pipeline-inside", lambda d, s: _tar_without(d, s, "pipeline.config", r"pipeline\.config"))
    add(fmt, "no-checkpoint-inside", lambda d, s: _tar_without(d, s, "model.ckpt.index", r"checkpoint|\.index"))
    add(fmt, "checkpoint-data-short-inside", lambda d, s: _tar_without(d, s, None, r"bytes", short=SSD_DATA))
    for kind in ("newline", "quotes", "dash"):
        def odd_tar(d, s, kind=kind):
            path, given, cwd = odd(d, kind, ".tar.gz")
            cut(copy(s.ssd_tar, path), "half")
            return ssd_run(given, d, (shown(path.name),), readable, cwd=cwd)
        add(fmt, f"name-{kind}", odd_tar)


def _tar_without(d, s, drop, cause, short=None):
    model = d / "in" / "ssd_model.tar.gz"
    model.parent.mkdir(parents=True)
    folder = copy(s.ssd, d / "work" / "ssd_model")
    if drop:
        (folder / drop).unlink()
    if short:
        resize(folder / short, -1)
    with tarfile.open(model, "w:gz") as tar:
        tar.add(folder, arcname="ssd_model")
    shutil.rmtree(d / "work")
    return ssd_run(model, d, ("ssd_model.tar.gz",) + ((short,) if short else ()), cause)


tar_cases()


# -- OUTPUT_DIR ------------------------------------------------------------------------------------------------------
def keras_input(d, s):
    return copy(s.h5, d / "in" / "model.h5")


@case("OUTPUT_DIR", "non-empty-without-force")
def _(d, s):
    put(d / "out" / "old.txt", "an earlier result")
    return Run(convert("keras", keras_input(d, s), d / "out"), ("out",), r"not empty.*--force")


@case("OUTPUT_DIR", "force-with-bad-input-keeps-the-old-one")
def _(d, s):
    put(d / "out" / "old.txt", "an earlier result")
    model = put(d / "in" / "model.h5", b"")
    return Run(convert("keras", model, d / "out", "--force"), ("model.h5",), r"is empty")


@case("OUTPUT_DIR", "force-with-a-step-rejecting-keeps-the-old-one", container=True)
def _(d, s):
    put(d / "out" / "old.txt", "an earlier result")
    weights = resize(copy(s.darknet / "model.weights", d / "in" / "model.weights"), 4)
    model = copy(s.darknet / "model.cfg", d / "in" / "model.cfg")
    return Run(convert("darknet", model, d / "out", "--weights", weights, "--force"), ("model.weights",),
               r"too long|left over")


@case("OUTPUT_DIR", "equal-to-the-input-folder")
def _(d, s):
    model = copy(s.saved_model, d / "in" / "saved_model")
    return Run(convert("tf_saved_model", model, model, "--force"), ("saved_model",), r"input")


@case("OUTPUT_DIR", "inside-the-input-folder")
def _(d, s):
    model = copy(s.saved_model, d / "in" / "saved_model")
    return Run(convert("tf_saved_model", model, model / "out"), ("saved_model",), r"inside")


@case("OUTPUT_DIR", "holding-the-input-with-force")
def _(d, s):
    model = copy(s.h5, d / "in" / "model.h5")
    return Run(convert("keras", model, d / "in", "--force"), ("in", "model.h5"), r"inside|input")


@case("OUTPUT_DIR", "exists-as-a-file")
def _(d, s):
    put(d / "out", "a file")
    return Run(convert("keras", keras_input(d, s), d / "out"), ("out",), r"not a folder")


@case("OUTPUT_DIR", "parent-is-a-file")
def _(d, s):
    model = keras_input(d, s)
    return Run(convert("keras", model, model / "out"), ("model.h5",), r"not a folder")


@case("OUTPUT_DIR", "read-only-parent")
def _(d, s):
    import subprocess

    parent = d / "ro"
    parent.mkdir()
    if os.geteuid() == 0:  # root writes through file modes: a read-only file system instead
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(parent)], check=True)
        cleanup = lambda: subprocess.run(["umount", str(parent)], check=True)  # noqa: E731
    else:
        parent.chmod(0o555)
        cleanup = lambda: parent.chmod(0o755)  # noqa: E731
    return Run(convert("keras", keras_input(d, s), parent / "out"), ("ro",), r"read-only|not writable|cannot write",
               cleanup=cleanup)


@case("keras (.h5)", "a-fifo")
def _(d, s):
    model = d / "in" / "model.h5"
    model.parent.mkdir(parents=True)
    os.mkfifo(model)  # reading it would wait for a writer for ever
    return Run(keras_argv(model, d / "out", s), ("model.h5",), r"FIFO")


@case("keras (.h5)", "valid-model-non-utf8-name")
def _(d, s):
    model = copy(s.h5, d / "in" / (ODD_NAMES["non-utf8"] + ".h5"))
    return Run(keras_argv(model, d / "out", s), (shown(model.name),), NOT_UTF8)


@case("OUTPUT_DIR", "name-non-utf8")
def _(d, s):
    out = d / ODD_NAMES["non-utf8"]
    return Run(convert("keras", keras_input(d, s), out), (shown(out.name),), NOT_UTF8)


@case("OUTPUT_DIR", "name-newline-non-empty")
def _(d, s):
    out = d / "o\nut"
    put(out / "old.txt", "an earlier result")
    return Run(convert("keras", keras_input(d, s), out), (shown(out.name),), r"not empty")
