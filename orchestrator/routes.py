"""Conversion steps and their options, declared as data: one record per option and one per step.

A route is a chain of steps found by the planner. Adding a route means adding a `Step` here (and, if
needed, one script in images/<stack>/steps/). Every step runs
    <stack's interpreter> /opt/steps/<script> <args...> --input <mounted input> --out /out [--<option> <value> ...]
in its stack's image and writes its artifact (named by the target format) into /out, plus /out/step.json
(images/shared/step_sdk.py). How a format's input is checked and mounted lives with the format (formats.py,
inputs.py); how a format's models run for verification is the format's `runner`.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Option:
    name: str
    kind: str  # "str", "csv", "int", "float", "bool", "choice", "path", "code" (FILE.py:Name), "json", ...
    help: str
    choices: tuple = ()
    default: object = None
    requires: tuple = ()  # (value, option): that value needs that option too
    together: str = ""  # an option that must be given with this one
    repeatable: bool = False  # one value per input; given several times, the values are joined with ';'
    replaced_by: tuple = ()  # deprecated: (value, option) pairs; the value sets that option instead
    names_artifact: str = ""  # the file name of this format's artifact in OUTPUT_DIR (the host renames it)
    model_format: str = ""  # a path option holding a model of this format (checked like an INPUT of it)
    translated_as: str = ""  # when the step taking it cannot read who wrote that model (stack.json "reads"), the
    #                          planner's chain to this format runs on it first (e.g. a Keras 3 base into Keras 2)
    only_to: tuple = ()  # the option means something only for these targets
    new_reference: bool = False  # the step that takes it changes what the model computes: verification's
    #                              reference is that step's artifact, not the user's input


@dataclass(frozen=True)
class Runner:
    """How to run a model of one kind on inputs, for verification: `kind` is the runner script's --format."""

    kind: str
    stack: str
    script: str = "run_model.py"
    options: tuple = ()


@dataclass(frozen=True)
class Step:
    name: str
    source: str
    target: str
    stack: str
    script: str
    route_flags: tuple = ()  # "--from"/"--to": the script is told the step's source/target format by these flags
    options: tuple = ()  # names of Options this step's script takes
    choices: tuple = ()  # (option, allowed values) pairs narrowing an option's choices for this step
    when: tuple = ()  # (option, value or values): chosen only when the option has that value (None: not given);
    #                   the value "auto" tries every value that gives a route and keeps the best verified result
    required: tuple = ()  # options the step cannot do without
    checks_itself: bool = False  # judges its own attempts on the verification's input plan (gets --plan)
    result_runner: Runner = None  # its result runs in this runner (it knows what the step changed, e.g. the
    #                               layout); a chain that goes on past the step has no runner for its result
    reads_newer: str = ""  # why it also takes files newer than its stack reads (stack.json "reads"); the input's
    #                        verification run is still in a stack that reads it
    float_reference: bool = False  # a quantized result also gets its float twin, for the report's per-layer errors,
    #                                only when a report is made (gets --float_reference true|false)

    @property
    def args(self):
        """The fixed arguments of its script: the route flags it takes, with this step's formats."""
        values = {"--from": self.source, "--to": self.target}
        return tuple(part for flag in self.route_flags for part in (flag, values[flag]))

    def chosen_by(self, option):
        """Whether `option` chooses this step (its `when`)."""
        return bool(self.when) and self.when[0] == option

    def accepts(self):
        """Every option name this step accepts: its script's, and the one choosing it."""
        return self.options + ((self.when[0],) if self.when else ())


OPTIONS = {o.name: o for o in (
    Option("quantize", "choice", "post-training quantization (SSD routes: none or uint8; ONNX/PyTorch routes: int8 "
           "keeps float input/output, int8-full makes them int8 too)",
           ("none", "float16", "dynamic", "int8", "int8-full", "uint8"), "none",
           requires=(("int8", "calibration"), ("int8-full", "calibration"))),
    Option("calibration", "path", "representative inputs for int8: a .npy (samples on axis 0), an .npz "
           "(one array per input) or a folder of .npy files (ONNX/PyTorch routes: or of images)"),
    Option("inference_input_type", "choice", "input type of an int8 model", ("int8", "uint8", "float32"), "int8"),
    Option("inference_output_type", "choice", "output type of an int8 model", ("int8", "uint8", "float32"), "int8"),
    Option("signature_name", "str", "SavedModel signature to convert", default="serving_default"),
    Option("saved_model_tags", "csv", "MetaGraphDef tags of the SavedModel, comma-separated", default="serve"),
    Option("input_arrays", "csv", "input tensor names of a frozen graph, comma-separated"),
    Option("output_arrays", "csv", "output tensor names of a frozen graph, comma-separated"),
    Option("input_shapes", "shapes", "input shapes of a frozen graph, e.g. 1,224,224,3:1,10"),
    Option("allow_custom_ops", "bool", "let the TFLite converter keep ops it does not know", default=False),
    Option("allow_flex_ops", "bool", "keep ops that have no TFLite builtin as Flex (TF Select) ops; the app then "
           "needs the Flex delegate (without it, such a model is refused)", default=False),
    # TF1 Object Detection API SSD
    Option("pipeline_config", "path", "pipeline.config to use instead of the one found in the model folder"),
    Option("checkpoint", "prefix", "checkpoint prefix (e.g. DIR/model.ckpt) instead of the one found"),
    Option("add_postprocessing_op", "bool", "add the TFLite_Detection_PostProcess op", default=True),
    Option("max_detections", "int", "detections kept by the post-processing op", default=10),
    Option("max_classes_per_detection", "int", "classes per detection in the post-processing op", default=1),
    Option("use_regular_nms", "bool", "regular (per-class) NMS instead of the fast variant", default=False),
    Option("converter", "choice", "the converter of a route that has several: SSD graphs: toco (TF1, default) or "
           "mlir (TF2); PyTorch: onnx2tf (through ONNX, default) or litert-torch; auto tries each and keeps the "
           "verified result with the fewest TRANSPOSE ops, then the smaller file",
           ("toco", "mlir", "onnx2tf", "litert-torch", "auto")),
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
    Option("quantization_bytes", "int", "deprecated: 1 = --quantize_uint8, 2 = --quantize_uint16",
           replaced_by=((1, "quantize_uint8"), (2, "quantize_uint16"))),
    Option("weight_shard_size_bytes", "int", "bytes per weight shard file", default=4194304),
    Option("output_node_names", "csv", "output nodes of a frozen graph, comma-separated"),
    Option("control_flow_v2", "bool", "keep control flow v2 ops in graph models"),
    Option("metadata", "metadata", "user metadata: NAME:FILE.json,... stored in model.json"),
    Option("use_structured_outputs_names", "bool", "graph model outputs keep the SavedModel's structured names"),
    Option("weights_path_prefix", "path", "folder holding the weight shards of a TF.js model.json kept elsewhere"),
    Option("model_tflite", "str", "file name of the .tflite written into OUTPUT_DIR (default model.tflite)",
           names_artifact="tflite"),
    Option("base_model", "path", "Keras base network (.h5 or .keras, any Keras version a stack reads) to put a TF.js "
           "head under (with --base_layer)", together="base_layer", model_format="keras", translated_as="keras2",
           only_to=("tflite",), new_reference=True),
    Option("base_layer", "str", "layer of --base_model whose output feeds the head", together="base_model"),
    # PyTorch -> ONNX (torch stack)
    Option("input_shape", "shapes", "input shapes of the PyTorch model, e.g. 1,3,224,224 (several inputs: "
           "1,3,224,224:1,10)"),
    Option("model_code", "code", "FILE.py:ClassName: the model's class, for a state_dict or a pickled module"),
    Option("model_args", "json", "constructor arguments of --model_code's class: a JSON list or object"),
    Option("opset", "int", "ONNX opset of the export (default: the exporter's own)"),
    Option("dynamic_batch", "bool", "export with a dynamic batch dimension", default=False),
    Option("input_names", "csv", "PyTorch: names given to the ONNX inputs (default input_0, input_1, ...); TF.js graph "
           "model: the graph's input nodes (default: its signature, else its Placeholders, as TF.js takes them)"),
    Option("output_names", "csv", "PyTorch: names given to the ONNX outputs (default output_0, ...); TF.js graph model: "
           "the graph's output nodes (default: its signature, else the nodes nothing consumes)"),
    Option("exporter", "choice", "torch.onnx exporter (auto: torchscript for TorchScript input, else dynamo)",
           ("auto", "dynamo", "torchscript"), "auto"),
    Option("quantizer", "choice", "LiteRT Torch's quantizer (auto: pt2e for dynamic and int8, ai-edge-quantizer for "
           "int8-full)", ("auto", "pt2e", "ai_edge_quantizer"), "auto"),
    # onnx2tf (ONNX -> TFLite / SavedModel)
    Option("keep_nchw", "optcsv", "keep inputs NCHW in the converted model: all, or a comma list of input names"),
    Option("param_replacement", "path", "onnx2tf parameter-replacement JSON, applied to every conversion attempt"),
    Option("remedies", "choice", "when onnx2tf's default conversion fails or computes something else: try its "
           "remedies (auto) or stop (off)", ("auto", "off"), "auto"),
    Option("mean", "csv", "calibration normalization (x - mean) / std, per channel; images are scaled to [0, 1] "
           "first", together="std"),
    Option("std", "csv", "calibration normalization (x - mean) / std, per channel", together="mean"),
    # Darknet
    Option("weights", "path", "the Darknet .weights file of the .cfg"),
    # JAX / Flax
    Option("input_signature", "signatures", "an input of apply_fn as SHAPE:DTYPE, e.g. 3,4:float32 or b,4:float32 "
           "(a name is a dynamic dimension); repeat the flag for several inputs", repeatable=True),
    Option("polymorphic_shapes", "polyshapes", "jax2tf polymorphic shape of an input, e.g. '(b, 4)'; repeat per "
           "input (default: derived from the signature's names)", repeatable=True),
    Option("params", "path", "Flax msgpack params (flax.serialization) passed to build(params)"),
    # verification
    Option("sample_input", "path", "verify on these inputs first (.npy: samples on axis 0, or one sample; .npz: "
           "one array per input; a folder of .npy), besides the seeded random ones"),
    Option("seed", "int", "seed of the random verification inputs", default=0),
    Option("verify_samples", "int", "random verification inputs per distribution", default=8),
    Option("tolerance", "float", "max error relative to the output scale (default: by quantization mode, raised "
           "to 10x the source's own float32 noise)"),
)}

DEFAULT_TARGET = "tflite"  # TO when none is given

TFJS_NEWER = ("tensorflowjs_converter rewrites the graph of a newer TensorFlow's SavedModel into TF.js ops, and the "
              "TF.js result is verified against the SavedModel run in a stack that reads it")

VERIFY_OPTIONS = ("sample_input", "seed", "verify_samples", "tolerance")

TFJS_OUT = ("quantize_float16", "quantize_uint8", "quantize_uint16", "weight_shard_size_bytes", "metadata")
TFJS_GRAPH_OUT = TFJS_OUT + ("strip_debug_ops", "control_flow_v2", "use_structured_outputs_names")

SSD_EXPORT_OPTIONS = ("add_postprocessing_op", "max_detections", "max_classes_per_detection", "use_regular_nms")
SSD_CONVERT_OPTIONS = ("quantize", "mean_values", "std_dev_values", "default_ranges_min", "default_ranges_max",
                       "graphviz")
SSD_RESULT = Runner("tflite_ssd", "tf2", options=("max_detections",))  # the .tflite with its post-processing op

TFLITE_CHOICES = (("quantize", ("none", "float16", "dynamic", "int8")),)
TFLITE_OPTIONS = ("quantize", "calibration", "inference_input_type", "inference_output_type", "allow_custom_ops",
                  "allow_flex_ops")

JAX_OPTIONS = ("input_signature", "polymorphic_shapes", "params")
TORCH_EXPORT_OPTIONS = ("input_shape", "model_code", "model_args", "opset", "dynamic_batch", "input_names",
                        "output_names", "exporter")
ONNX2TF_OPTIONS = ("keep_nchw", "param_replacement", "remedies")
LITERT_TORCH_OPTIONS = ("input_shape", "model_code", "model_args", "input_names", "output_names", "keep_nchw",
                        "quantize", "calibration", "quantizer", "allow_flex_ops")
ONNX2TF_TFLITE_OPTIONS = ONNX2TF_OPTIONS + ("quantize", "calibration", "mean", "std", "allow_flex_ops")

TO_TFLITE = {"choices": TFLITE_CHOICES, "float_reference": True}  # the TFLite converter's steps (to_tflite.py)

STEPS = (
    Step("keras_to_tflite", "keras", "tflite", "tf2", "to_tflite.py", ("--from",), TFLITE_OPTIONS,
         **TO_TFLITE),
    Step("keras_saved_model_to_tflite", "keras_saved_model", "tflite", "tf2", "to_tflite.py",
         ("--from",), TFLITE_OPTIONS, **TO_TFLITE),
    Step("tf_saved_model_to_tflite", "tf_saved_model", "tflite", "tf2", "to_tflite.py", ("--from",),
         TFLITE_OPTIONS + ("signature_name", "saved_model_tags"), **TO_TFLITE),
    Step("tf_hub_to_tflite", "tf_hub", "tflite", "tf2", "to_tflite.py", ("--from",),
         TFLITE_OPTIONS + ("signature_name", "saved_model_tags"), **TO_TFLITE),
    Step("tf_frozen_model_to_tflite", "tf_frozen_model", "tflite", "tf2", "to_tflite.py",
         ("--from",), TFLITE_OPTIONS + ("input_arrays", "output_arrays", "input_shapes"),
         **TO_TFLITE, required=("input_arrays", "output_arrays")),
    # Keras 3 (.keras, .h5) and tf_keras 2.16+ files, and SavedModels of TF 2.16+: TF 2.21's converter in the
    # keras3 stack (stack.json "reads")
    Step("keras3_to_tflite", "keras", "tflite", "keras3", "to_tflite.py", ("--from",), TFLITE_OPTIONS,
         **TO_TFLITE),
    Step("keras3_keras_saved_model_to_tflite", "keras_saved_model", "tflite", "keras3", "to_tflite.py", ("--from",),
         TFLITE_OPTIONS, **TO_TFLITE),
    Step("keras3_tf_saved_model_to_tflite", "tf_saved_model", "tflite", "keras3", "to_tflite.py", ("--from",),
         TFLITE_OPTIONS + ("signature_name", "saved_model_tags"), **TO_TFLITE),
    Step("keras3_tf_hub_to_tflite", "tf_hub", "tflite", "keras3", "to_tflite.py", ("--from",),
         TFLITE_OPTIONS + ("signature_name", "saved_model_tags"), **TO_TFLITE),
    # ... and to a SavedModel (Keras 3's model.export), which tf2's TF.js converter reads for graph models
    Step("keras3_to_tf_saved_model", "keras", "tf_saved_model", "keras3", "export_saved_model.py"),
    # ... and to a TF.js layers model: the config translated into Keras 2's grammar and the weights copied (keras3),
    # then tf2's TF.js converter
    Step("keras3_to_keras2", "keras", "keras2", "keras3", "to_keras2.py"),
    Step("keras3_saved_model_to_keras2", "keras_saved_model", "keras2", "keras3", "to_keras2.py"),
    Step("keras2_to_tfjs_layers", "keras2", "tfjs_layers_model", "tf2", "tfjs_convert.py", ("--from", "--to"),
         TFJS_OUT),
    # the tensorflowjs_converter table (TF2 stack)
    Step("keras_to_tfjs_layers", "keras", "tfjs_layers_model", "tf2", "tfjs_convert.py",
         ("--from", "--to"), TFJS_OUT),
    Step("keras_to_tfjs_graph", "keras", "tfjs_graph_model", "tf2", "tfjs_convert.py",
         ("--from", "--to"), TFJS_GRAPH_OUT),
    Step("keras_saved_model_to_tfjs_layers", "keras_saved_model", "tfjs_layers_model", "tf2", "tfjs_convert.py",
         ("--from", "--to"), TFJS_OUT),
    Step("tf_saved_model_to_tfjs_graph", "tf_saved_model", "tfjs_graph_model", "tf2", "tfjs_convert.py",
         ("--from", "--to"), TFJS_GRAPH_OUT + ("signature_name", "saved_model_tags"), reads_newer=TFJS_NEWER),
    Step("tf_frozen_model_to_tfjs_graph", "tf_frozen_model", "tfjs_graph_model", "tf2", "tfjs_convert.py",
         ("--from", "--to"), TFJS_GRAPH_OUT + ("output_node_names",),
         required=("output_node_names",)),
    Step("tf_hub_to_tfjs_graph", "tf_hub", "tfjs_graph_model", "tf2", "tfjs_convert.py",
         ("--from", "--to"), TFJS_GRAPH_OUT + ("signature_name", "saved_model_tags"), reads_newer=TFJS_NEWER),
    Step("tfjs_layers_to_keras", "tfjs_layers_model", "keras", "tf2", "tfjs_convert.py",
         ("--from", "--to"), ("base_model", "base_layer")),
    Step("tfjs_layers_to_keras_saved_model", "tfjs_layers_model", "keras_saved_model", "tf2", "tfjs_convert.py",
         ("--from", "--to")),
    Step("tfjs_layers_to_tfjs_layers", "tfjs_layers_model", "tfjs_layers_model", "tf2", "tfjs_convert.py",
         ("--from", "--to"), TFJS_OUT),
    Step("tfjs_layers_to_tfjs_graph", "tfjs_layers_model", "tfjs_graph_model", "tf2", "tfjs_convert.py",
         ("--from", "--to"), TFJS_GRAPH_OUT),
    # not in the tensorflowjs_converter table: a graph model back to a SavedModel (and on to TFLite)
    Step("tfjs_graph_to_tf_saved_model", "tfjs_graph_model", "tf_saved_model", "tf2", "tfjs_graph_to_saved_model.py",
         options=("input_names", "output_names")),
    # PyTorch -> ONNX (torch stack), ONNX -> TFLite / SavedModel (onnx2tf stack, NHWC: its results run in its own
    # stack, whose runner transposes the reference's NCHW inputs and outputs), Darknet -> Keras (TF2 stack)
    Step("pytorch_to_onnx", "pytorch", "onnx", "torch", "export_onnx.py", (), TORCH_EXPORT_OPTIONS,
         required=("input_shape",)),
    Step("onnx_to_tflite", "onnx", "tflite", "onnx2tf", "onnx2tf_convert.py", ("--to",),
         ONNX2TF_TFLITE_OPTIONS, choices=(("quantize", ("none", "float16", "dynamic", "int8", "int8-full")),),
         when=("converter", ("onnx2tf", None)), checks_itself=True, result_runner=Runner("tflite", "onnx2tf")),
    Step("onnx_to_tf_saved_model", "onnx", "tf_saved_model", "onnx2tf", "onnx2tf_convert.py",
         ("--to",), ONNX2TF_OPTIONS, when=("converter", ("onnx2tf", None)), checks_itself=True,
         result_runner=Runner("tf_saved_model", "onnx2tf")),
    # PyTorch -> TFLite in one step with LiteRT Torch (--converter litert-torch; torch.export, no ONNX, no TF); its
    # result runs in its own stack, whose runner transposes the reference's NCHW inputs as onnx2tf's does
    Step("pytorch_to_tflite_litert", "pytorch", "tflite", "litert_torch", "litert_convert.py", (),
         LITERT_TORCH_OPTIONS, choices=(("quantize", ("none", "dynamic", "int8", "int8-full")),),
         required=("input_shape",), when=("converter", "litert-torch"), result_runner=Runner("tflite", "litert_torch")),
    Step("darknet_to_keras", "darknet", "keras", "tf2", "darknet_to_keras.py"),
    # JAX / Flax -> SavedModel (jax2tf, as tensorflowjs' convert_jax does it), then the TF.js or TFLite converter
    Step("jax_to_tf_saved_model", "jax", "tf_saved_model", "tf2", "jax_to_saved_model.py", (), JAX_OPTIONS,
         required=("input_signature",)),
    # TF1 Object Detection API SSD: exported for TFLite in TF1, converted by TOCO (TF1) or the MLIR converter (TF2);
    # the exported graph (in TF1) is the reference of the .tflite with its post-processing op
    Step("ssd_export", "ssd", "ssd_graph", "tf1", "ssd_export.py", (), SSD_EXPORT_OPTIONS),
    Step("ssd_toco", "ssd_graph", "tflite", "tf1", "ssd_toco.py", (), SSD_CONVERT_OPTIONS,
         choices=(("quantize", ("none", "uint8")),), when=("converter", ("toco", None)), result_runner=SSD_RESULT),
    Step("ssd_mlir", "ssd_graph", "tflite", "tf2", "ssd_mlir.py", (), SSD_CONVERT_OPTIONS,
         choices=(("quantize", ("none", "uint8")), ("graphviz", (False,))), when=("converter", "mlir"),
         result_runner=SSD_RESULT),
)
