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
    choices: tuple = ()  # (option, allowed values) pairs narrowing an option's choices for this step
    when: tuple = ()  # (option, value): the step is chosen only when the option has that value


@dataclass(frozen=True)
class Check:
    """How a route's result is verified when the default (source runner vs target runner) does not fit."""

    reference: "Runner"
    reference_format: str  # the format in the chain whose artifact the reference runs on
    result: "Runner"


@dataclass(frozen=True)
class Runner:
    """How to run a model of one format on inputs, for verification."""

    format: str
    stack: str
    script: str = "run_model.py"
    options: tuple = ()


OPTIONS = {o.name: o for o in (
    Option("quantize", "choice", "post-training quantization (SSD routes: none or uint8)",
           ("none", "float16", "dynamic", "int8", "uint8"), "none"),
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
    # TF1 Object Detection API SSD
    Option("pipeline_config", "path", "pipeline.config to use instead of the one found in the model folder"),
    Option("checkpoint", "prefix", "checkpoint prefix (e.g. DIR/model.ckpt) instead of the one found"),
    Option("add_postprocessing_op", "bool", "add the TFLite_Detection_PostProcess op", default=True),
    Option("max_detections", "int", "detections kept by the post-processing op", default=10),
    Option("max_classes_per_detection", "int", "classes per detection in the post-processing op", default=1),
    Option("use_regular_nms", "bool", "regular (per-class) NMS instead of the fast variant", default=False),
    Option("converter", "choice", "TFLite converter for SSD graphs: TOCO (TF1) or the MLIR converter (TF2)",
           ("toco", "mlir"), "toco"),
    Option("mean_values", "float", "uint8 input: real = (q - mean) / std", default=128.0),
    Option("std_dev_values", "float", "uint8 input: real = (q - mean) / std", default=127.0),
    Option("default_ranges_min", "float", "range for tensors without one, for uint8 of a float-trained graph"),
    Option("default_ranges_max", "float", "range for tensors without one, for uint8 of a float-trained graph"),
    Option("graphviz", "bool", "also write the GRAPHVIZ_DOT output and an SVG rendering of it", default=False),
    # TensorFlow.js converter (its own flag names and meanings)
    Option("strip_debug_ops", "bool", "strip debug ops (Print, Assert, CheckNumerics)"),
    Option("quantize_float16", "optcsv", "store weights as float16: all, or a comma list of node names with *"),
    Option("quantize_uint8", "optcsv", "store weights as affine-quantized uint8: all, or a comma list of names"),
    Option("quantize_uint16", "optcsv", "store weights as affine-quantized uint16: all, or a comma list of names"),
    Option("quantization_bytes", "int", "deprecated: 1 = --quantize_uint8, 2 = --quantize_uint16"),
    Option("weight_shard_size_bytes", "int", "bytes per weight shard file", default=4194304),
    Option("output_node_names", "csv", "output nodes of a frozen graph, comma-separated"),
    Option("control_flow_v2", "bool", "keep control flow v2 ops in graph models"),
    Option("metadata", "metadata", "user metadata: NAME:FILE.json,... stored in model.json"),
    Option("use_structured_outputs_names", "bool", "graph model outputs keep the SavedModel's structured names"),
    Option("weights_path_prefix", "path", "folder holding the weight shards of a TF.js model.json kept elsewhere"),
    Option("model_tflite", "str", "file name of the .tflite written into OUTPUT_DIR (default model.tflite)"),
    Option("base_model", "path", "Keras .h5 base network to put a TF.js head under (with --base_layer)"),
    Option("base_layer", "str", "layer of --base_model whose output feeds the head"),
    # verification
    Option("sample_input", "path", "verify on this .npy/.npz instead of seeded random inputs"),
    Option("seed", "int", "seed of the random verification inputs", default=0),
    Option("tolerance", "float", "max error relative to the output scale (default by quantization mode)"),
)}

VERIFY_OPTIONS = ("sample_input", "seed", "tolerance")

TFJS_OUT = ("quantize_float16", "quantize_uint8", "quantize_uint16", "weight_shard_size_bytes", "metadata")
TFJS_GRAPH_OUT = TFJS_OUT + ("strip_debug_ops", "control_flow_v2", "use_structured_outputs_names")

# options handled on the host (choosing steps, preparing the input, naming the output), not passed to scripts
HOST_OPTIONS = ("converter", "weights_path_prefix", "model_tflite")

SSD_EXPORT_OPTIONS = ("pipeline_config", "checkpoint", "add_postprocessing_op", "max_detections",
                      "max_classes_per_detection", "use_regular_nms")
SSD_CONVERT_OPTIONS = ("converter", "quantize", "mean_values", "std_dev_values", "default_ranges_min",
                       "default_ranges_max", "graphviz")

TFLITE_CHOICES = (("quantize", ("none", "float16", "dynamic", "int8")),)
TFLITE_OPTIONS = ("quantize", "calibration", "inference_input_type", "inference_output_type", "allow_custom_ops",
                  "model_tflite")

STEPS = (
    Step("keras_to_tflite", "keras", "tflite", "tf2", "to_tflite.py", ("--from", "keras"), TFLITE_OPTIONS,
         choices=TFLITE_CHOICES),
    Step("keras_saved_model_to_tflite", "keras_saved_model", "tflite", "tf2", "to_tflite.py",
         ("--from", "keras_saved_model"), TFLITE_OPTIONS, choices=TFLITE_CHOICES),
    Step("tf_saved_model_to_tflite", "tf_saved_model", "tflite", "tf2", "to_tflite.py", ("--from", "tf_saved_model"),
         TFLITE_OPTIONS + ("signature_name", "saved_model_tags"), choices=TFLITE_CHOICES),
    Step("tf_frozen_model_to_tflite", "tf_frozen_model", "tflite", "tf2", "to_tflite.py",
         ("--from", "tf_frozen_model"), TFLITE_OPTIONS + ("input_arrays", "output_arrays", "input_shapes"),
         choices=TFLITE_CHOICES),
    # the tensorflowjs_converter table (TF2 stack)
    Step("keras_to_tfjs_layers", "keras", "tfjs_layers_model", "tf2", "tfjs_convert.py",
         ("--from", "keras", "--to", "tfjs_layers_model"), TFJS_OUT),
    Step("keras_to_tfjs_graph", "keras", "tfjs_graph_model", "tf2", "tfjs_convert.py",
         ("--from", "keras", "--to", "tfjs_graph_model"), TFJS_GRAPH_OUT),
    Step("keras_saved_model_to_tfjs_layers", "keras_saved_model", "tfjs_layers_model", "tf2", "tfjs_convert.py",
         ("--from", "keras_saved_model", "--to", "tfjs_layers_model"), TFJS_OUT),
    Step("tf_saved_model_to_tfjs_graph", "tf_saved_model", "tfjs_graph_model", "tf2", "tfjs_convert.py",
         ("--from", "tf_saved_model", "--to", "tfjs_graph_model"), TFJS_GRAPH_OUT + ("signature_name",
                                                                                    "saved_model_tags")),
    Step("tf_frozen_model_to_tfjs_graph", "tf_frozen_model", "tfjs_graph_model", "tf2", "tfjs_convert.py",
         ("--from", "tf_frozen_model", "--to", "tfjs_graph_model"), TFJS_GRAPH_OUT + ("output_node_names",)),
    Step("tf_hub_to_tfjs_graph", "tf_hub", "tfjs_graph_model", "tf2", "tfjs_convert.py",
         ("--from", "tf_hub", "--to", "tfjs_graph_model"), TFJS_GRAPH_OUT + ("signature_name", "saved_model_tags")),
    Step("tfjs_layers_to_keras", "tfjs_layers_model", "keras", "tf2", "tfjs_convert.py",
         ("--from", "tfjs_layers_model", "--to", "keras"), ("weights_path_prefix", "base_model", "base_layer")),
    Step("tfjs_layers_to_keras_saved_model", "tfjs_layers_model", "keras_saved_model", "tf2", "tfjs_convert.py",
         ("--from", "tfjs_layers_model", "--to", "keras_saved_model"), ("weights_path_prefix",)),
    Step("tfjs_layers_to_tfjs_layers", "tfjs_layers_model", "tfjs_layers_model", "tf2", "tfjs_convert.py",
         ("--from", "tfjs_layers_model", "--to", "tfjs_layers_model"), TFJS_OUT + ("weights_path_prefix",)),
    Step("tfjs_layers_to_tfjs_graph", "tfjs_layers_model", "tfjs_graph_model", "tf2", "tfjs_convert.py",
         ("--from", "tfjs_layers_model", "--to", "tfjs_graph_model"), TFJS_GRAPH_OUT + ("weights_path_prefix",)),
    # not in the tensorflowjs_converter table: a graph model back to a SavedModel (and on to TFLite)
    Step("tfjs_graph_to_tf_saved_model", "tfjs_graph_model", "tf_saved_model", "tf2", "tfjs_graph_to_saved_model.py",
         (), ("weights_path_prefix",)),
    # TF1 Object Detection API SSD
    Step("ssd_export", "ssd", "ssd_graph", "tf1", "ssd_export.py", (), SSD_EXPORT_OPTIONS),
    Step("ssd_toco", "ssd_graph", "tflite", "tf1", "ssd_toco.py", (), SSD_CONVERT_OPTIONS,
         choices=(("quantize", ("none", "uint8")),), when=("converter", "toco")),
    Step("ssd_mlir", "ssd_graph", "tflite", "tf2", "ssd_mlir.py", (), SSD_CONVERT_OPTIONS,
         choices=(("quantize", ("none", "uint8")), ("graphviz", (False,))), when=("converter", "mlir")),
)

RUNNERS = {r.format: r for r in (
    Runner("keras", "tf2"),
    Runner("keras_saved_model", "tf2"),
    Runner("tf_saved_model", "tf2", options=("signature_name", "saved_model_tags")),
    Runner("tf_frozen_model", "tf2", options=("input_arrays", "output_arrays", "input_shapes", "output_node_names")),
    Runner("tf_hub", "tf2", options=("signature_name", "saved_model_tags")),  # a TF2 Hub module is a SavedModel
    Runner("tflite", "tf2"),
    Runner("tfjs_layers_model", "tfjs", "run_tfjs.js"),
    Runner("tfjs_graph_model", "tfjs", "run_tfjs.js"),
)}

CHECKS = {
    # SSD: the exported frozen graph in TF1 against the .tflite, on the raw box encodings and class predictions
    ("ssd", "tflite"): Check(Runner("ssd_graph", "tf1", "run_ssd_graph.py"), "ssd_graph",
                             Runner("tflite_ssd", "tf2", options=("max_detections",))),
}

# the stack that compares reference and result outputs
COMPARE = Runner("compare", "tf2", script="compare.py")

# required options per (step) when another option has a value: (step option, value) -> option required
REQUIRES = {
    ("quantize", "int8"): "calibration",
}
STEP_REQUIRED = {
    "tf_frozen_model_to_tflite": ("input_arrays", "output_arrays"),
    "tf_frozen_model_to_tfjs_graph": ("output_node_names",),
}

# options that go together
TOGETHER = (("base_model", "base_layer"),)

# deprecated option -> (replacement by value, warning)
DEPRECATED = {
    "quantization_bytes": ({1: "quantize_uint8", 2: "quantize_uint16"},
                           "--quantization_bytes is deprecated; use --quantize_uint8 or --quantize_uint16"),
}
