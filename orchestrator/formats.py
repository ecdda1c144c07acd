"""Model formats (tensorflowjs_converter's names where they exist), each one record: what its INPUT is (an input
adapter, inputs.py), the artifact a step writes for it, and how its models run for verification (a Runner)."""

from dataclasses import dataclass

from orchestrator import detect, inputs
from orchestrator.errors import UsageError
from orchestrator.routes import Runner

JAX_RUNNER_OPTIONS = ("input_signature", "polymorphic_shapes", "params")


@dataclass(frozen=True)
class Format:
    name: str
    description: str
    artifact: str  # name of the artifact a step writes for this format, inside its output folder
    adapter: inputs.Adapter = None  # checks, hashes and mounts an INPUT of this format
    runner: Runner = None  # runs a model of this format for verification (None: not runnable)
    internal: bool = False  # an intermediate format of a route, not offered as FROM or TO
    transit: bool = True  # may sit in the middle of a chain (TF.js formats only start or end one)
    sniff: object = None  # detect.py: what of an INPUT says it is this format, when FROM is not given
    inspected_in: str = ""  # the stack `inspect` reads it in when that is not its runner's (inspect_model.py)
    inspectable: bool = True  # `inspect` reads it (a stack's inspect_model.py has a reader for it)


FILE, FOLDER = inputs.Adapter, (lambda check: inputs.Adapter(check, expects="folder"))
SAVED_MODEL = inputs.SavedModelFolder

FORMATS = {f.name: f for f in (
    Format("keras", "Keras model in one HDF5 file (.h5), or a Keras v3 .keras archive", "model.h5",
           inputs.KerasFile(), Runner("keras", "tf2"), sniff=detect.keras),
    Format("keras_saved_model", "Keras model saved as a SavedModel folder (model.save(dir))", "keras_saved_model",
           SAVED_MODEL(inputs.check_keras_saved_model), Runner("keras_saved_model", "tf2"),
           sniff=detect.keras_saved_model),
    Format("tf_saved_model", "TensorFlow SavedModel folder", "saved_model", SAVED_MODEL(inputs.check_saved_model),
           Runner("tf_saved_model", "tf2", options=("signature_name", "saved_model_tags")),
           sniff=detect.tf_saved_model),
    Format("tf_frozen_model", "frozen TensorFlow GraphDef (.pb)", "frozen_model.pb", FILE(inputs.check_frozen),
           Runner("tf_frozen_model", "tf2",
                  options=("input_arrays", "output_arrays", "input_shapes", "output_node_names")),
           sniff=detect.tf_frozen_model),
    Format("tf_hub", "TensorFlow Hub module folder", "tf_hub", SAVED_MODEL(inputs.check_saved_model),
           Runner("tf_hub", "tf2", options=("signature_name", "saved_model_tags"))),  # a TF2 module is a SavedModel
    Format("tfjs_layers_model", "TensorFlow.js layers model (model.json + weight shards)", "model.json",
           inputs.TfjsModel("layers-model"), Runner("tfjs_layers_model", "tfjs", "run_tfjs.js"), transit=False,
           sniff=detect.tfjs_layers_model, inspected_in="tf2"),
    Format("tfjs_graph_model", "TensorFlow.js graph model (model.json + weight shards)", "model.json",
           inputs.TfjsModel("graph-model"), Runner("tfjs_graph_model", "tfjs", "run_tfjs.js",
                                                   options=("input_names", "output_names")), transit=False,
           sniff=detect.tfjs_graph_model, inspected_in="tf2"),
    Format("tflite", "TensorFlow Lite flatbuffer (.tflite)", "model.tflite", FILE(inputs.check_tflite),
           Runner("tflite", "tf2"), sniff=detect.tflite),
    Format("onnx", "ONNX model (.onnx)", "model.onnx", inputs.OnnxFile(), Runner("onnx", "onnx2tf"), sniff=detect.onnx),
    Format("pytorch", "PyTorch model: TorchScript (torch.jit.save), ExportedProgram (.pt2), or a state_dict / "
           "pickled module with --model_code FILE.py:Class", "model.pt", FILE(inputs.check_pytorch),
           Runner("pytorch", "torch", "run_torch.py",
                  options=("input_shape", "model_code", "model_args", "input_names", "output_names")),
           sniff=detect.pytorch),
    Format("darknet", "Darknet .cfg, with its .weights given by --weights", "model.cfg", inputs.DarknetModel(),
           sniff=detect.darknet, inspected_in="tf2"),
    Format("jax", "JAX/Flax model as code: FILE.py:build, where build() returns (apply_fn, params)", "module.py",
           inputs.CodeReference(), Runner("jax", "tf2", "run_jax.py", options=JAX_RUNNER_OPTIONS), transit=False,
           sniff=detect.jax, inspectable=False),
    Format("ssd", "TF1 Object Detection API SSD: model-zoo folder (pipeline.config + checkpoint) or its .tar.gz",
           "ssd", inputs.SsdModel(), sniff=detect.ssd, inspectable=False),
    Format("keras2", "Keras 2 HDF5 translated from a Keras 3 or tf_keras 2.16+ model (read by tensorflowjs)",
           "model.h5", FILE(inputs.check_keras), Runner("keras", "tf2"), internal=True),
    Format("ssd_graph", "SSD graph exported for TFLite (tflite_graph.pb + ssd.json)", "tflite_graph.pb",
           FILE(inputs.check_frozen), Runner("ssd_graph", "tf1", "run_ssd_graph.py"), internal=True),
)}


def get(name):
    name = str(name)
    if name not in FORMATS:
        public = [n for n, f in FORMATS.items() if not f.internal]
        raise UsageError(f"unknown format '{name}'; formats: {', '.join(public)}")
    return FORMATS[name]


def public(name):
    """The format, refused when it is an intermediate format of a route (not a FROM or TO)."""
    fmt = get(name)
    if fmt.internal:
        raise UsageError(f"'{name}' is an intermediate format of a route")
    return fmt


def candidates(path):
    """[(format name, what was seen)] of every public format that knows INPUT (the wizard offers them)."""
    return detect.candidates(path, {n: f for n, f in FORMATS.items() if not f.internal})


def detect_format(path):
    """(format name, what was seen) of an INPUT given without FROM; InputError naming the candidates when it is
    none or several of them."""
    return detect.detect(path, {n: f for n, f in FORMATS.items() if not f.internal})


def check(name, path, values=None):
    """Check an INPUT of format `name`; return its inputs.Source."""
    fmt = get(name)
    return fmt.adapter.check(fmt, path, values)


def check_input(name, path, values=None):
    """Check an INPUT of format `name`; return its resolved path."""
    return check(name, path, values).path
