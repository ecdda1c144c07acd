"""Conversion steps, their options and the model runners used for verification, declared as data.

A route is a chain of steps found by the planner. Adding a route means adding a `Step` here (and, if
needed, one script in images/<stack>/steps/). Every step runs
    python /opt/steps/<script> <args...> --input <mounted input> --out /out [--<option> <value> ...]
in its stack's image and writes its artifact (named by the target format) into /out, plus /out/step.json.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Option:
    name: str
    kind: str  # "str", "csv", "int", "float", "bool", "choice", "path"
    help: str
    choices: tuple = ()
    default: object = None


@dataclass(frozen=True)
class Step:
    name: str
    source: str
    target: str
    stack: str
    script: str
    args: tuple = ()
    options: tuple = ()  # names of Options this step accepts


@dataclass(frozen=True)
class Runner:
    """How to run a model of one format on inputs, for verification."""

    format: str
    stack: str
    script: str = "run_model.py"
    options: tuple = ()


OPTIONS = {o.name: o for o in (
    Option("quantize", "choice", "post-training quantization", ("none", "float16", "dynamic", "int8"), "none"),
    Option("calibration", "path", "representative inputs for int8: a .npy (samples on axis 0), an .npz "
           "(one array per input) or a folder of .npy files"),
    Option("inference_input_type", "choice", "input type of an int8 model", ("int8", "uint8", "float32"), "int8"),
    Option("inference_output_type", "choice", "output type of an int8 model", ("int8", "uint8", "float32"), "int8"),
    Option("signature_name", "str", "SavedModel signature to convert", default="serving_default"),
    Option("saved_model_tags", "csv", "MetaGraphDef tags of the SavedModel, comma-separated", default="serve"),
    Option("input_arrays", "csv", "input tensor names of a frozen graph, comma-separated"),
    Option("output_arrays", "csv", "output tensor names of a frozen graph, comma-separated"),
    Option("input_shapes", "shapes", "input shapes of a frozen graph, e.g. 1,224,224,3:1,10"),
    Option("allow_custom_ops", "bool", "let the TFLite converter keep ops it does not know", default=False),
    # verification
    Option("sample_input", "path", "verify on this .npy/.npz instead of seeded random inputs"),
    Option("seed", "int", "seed of the random verification inputs", default=0),
    Option("tolerance", "float", "max error relative to the output scale (default by quantization mode)"),
)}

VERIFY_OPTIONS = ("sample_input", "seed", "tolerance")

TFLITE_OPTIONS = ("quantize", "calibration", "inference_input_type", "inference_output_type", "allow_custom_ops")

STEPS = (
    Step("keras_to_tflite", "keras", "tflite", "tf2", "to_tflite.py", ("--from", "keras"), TFLITE_OPTIONS),
    Step("keras_saved_model_to_tflite", "keras_saved_model", "tflite", "tf2", "to_tflite.py",
         ("--from", "keras_saved_model"), TFLITE_OPTIONS),
    Step("tf_saved_model_to_tflite", "tf_saved_model", "tflite", "tf2", "to_tflite.py", ("--from", "tf_saved_model"),
         TFLITE_OPTIONS + ("signature_name", "saved_model_tags")),
    Step("tf_frozen_model_to_tflite", "tf_frozen_model", "tflite", "tf2", "to_tflite.py",
         ("--from", "tf_frozen_model"), TFLITE_OPTIONS + ("input_arrays", "output_arrays", "input_shapes")),
)

RUNNERS = {r.format: r for r in (
    Runner("keras", "tf2"),
    Runner("keras_saved_model", "tf2"),
    Runner("tf_saved_model", "tf2", options=("signature_name", "saved_model_tags")),
    Runner("tf_frozen_model", "tf2", options=("input_arrays", "output_arrays", "input_shapes")),
    Runner("tflite", "tf2"),
)}

# the stack that compares reference and result outputs
COMPARE = Runner("compare", "tf2", script="compare.py")

# required options per (step) when another option has a value: (step option, value) -> option required
REQUIRES = {
    ("quantize", "int8"): "calibration",
}
STEP_REQUIRED = {
    "tf_frozen_model_to_tflite": ("input_arrays", "output_arrays"),
}
