"""Load a model of a given format and run it on named inputs (TF2 stack). Used by run_model.py.

Besides its outputs, a model offers what verification needs to trust them: `input_specs()` (integer ranges of
embedding inputs, a pixel hint from a Rescaling layer), `run_logits()` (the tensors feeding the outputs' final
softmax/sigmoid/argmax, read from the model's frozen TF graph) and `perturbed()` (the same model with its
arithmetic perturbed: float64 for Keras, the graph without TF's graph optimizations otherwise)."""


import numpy as np

import verify_io
from common import Spec, csv, first_line, reject, shapes
from saved_model_runtime import SignatureModel
from tflite_runtime import TFLiteModel, dequantize, quantize  # noqa: F401 (TFLiteModel is a loader)

ACTIVATIONS = ("Softmax", "Sigmoid", "ArgMax", "LogSoftmax")
PASS_THROUGH = ("Identity", "Reshape", "Squeeze", "StopGradient")


def _tf():
    import tensorflow as tf

    return tf


def load_keras(path):
    tf = _tf()
    try:
        return tf.keras.models.load_model(path, compile=False)
    except Exception as exc:  # h5py, keras and TF raise many types for unusable files
        reject(f"{path}: cannot load as a Keras model ({first_line(exc)})")


class GraphRunner:
    """A frozen TF graph in a v1 session: the outputs, and the logits feeding their final activation.
    `optimize=False` switches TF's graph optimizations off (a perturbation of the arithmetic)."""

    def __init__(self, graph_def, input_names, output_names, optimize=True):
        tf = _tf()
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf.compat.v1.import_graph_def(graph_def, name="")
        config = tf.compat.v1.ConfigProto()
        if not optimize:
            config.graph_options.rewrite_options.disable_meta_optimizer = True
            config.graph_options.optimizer_options.opt_level = tf.compat.v1.OptimizerOptions.L0
        self.session = tf.compat.v1.Session(graph=self.graph, config=config)
        self.input_names = [_tensor_name(n) for n in input_names]
        self.output_names = [_tensor_name(n) for n in output_names]
        self.logit_ops, self.logit_tensors = {}, {}
        for i, name in enumerate(self.output_names):
            op = self.graph.get_tensor_by_name(name).op
            while op.type in PASS_THROUGH and op.inputs:
                op = op.inputs[0].op
            if op.type in ACTIVATIONS:
                self.logit_ops[i], self.logit_tensors[i] = op.type, op.inputs[0].name

    def run(self, arrays):
        return self.session.run(self.output_names, dict(zip(self.input_names, arrays)))

    def logits(self, arrays):
        """{output index: logits}"""
        if not self.logit_tensors:
            return {}
        keys = sorted(self.logit_tensors)
        values = self.session.run([self.logit_tensors[k] for k in keys], dict(zip(self.input_names, arrays)))
        return dict(zip(keys, values))


def _tensor_name(name):
    return name if ":" in name else name + ":0"


def frozen_graph(concrete):
    """(graph_def, input tensor names, output tensor names) of a concrete function with its variables frozen."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    frozen = convert_variables_to_constants_v2(concrete)
    return (frozen.graph.as_graph_def(), [t.name for t in frozen.inputs],
            [t.name for t in frozen.outputs])


class _GraphBacked:
    """Logits and the perturbed twin of a model whose frozen graph can be had (`_graph()`)."""

    _runner = None

    def _graph_runner(self):
        if self._runner is None:
            try:
                self._runner = GraphRunner(*self._graph())
            except Exception:  # a graph that will not freeze (tables, resources): no logits
                self._runner = False
        return self._runner or None

    @property
    def logit_ops(self):
        runner = self._graph_runner()
        return {} if runner is None else {self.output_names[i]: op for i, op in runner.logit_ops.items()}

    def run_logits(self, feeds):
        runner = self._graph_runner()
        if runner is None:
            return {}
        values = runner.logits([feeds[s.name] for s in self.inputs])
        return {self.output_names[i]: np.asarray(v) for i, v in values.items()}

    def perturbed(self):
        """The frozen graph with TF's graph optimizations off."""
        try:
            runner = GraphRunner(*self._graph(), optimize=False)
        except Exception:
            return None, None
        return _RunnerModel(runner, self.inputs, self.output_names), "TF graph optimizations (grappler) off"


class _RunnerModel:
    def __init__(self, runner, inputs, output_names):
        self.runner, self.inputs, self.output_names = runner, inputs, output_names

    def run(self, feeds):
        return list(zip(self.output_names, self.runner.run([feeds[s.name] for s in self.inputs])))

    def run_logits(self, feeds):
        values = self.runner.logits([feeds[s.name] for s in self.inputs])
        return {self.output_names[i]: np.asarray(v) for i, v in values.items()}


class KerasModel(_GraphBacked):
    def __init__(self, path, args):
        self.model = load_keras(path)
        self.inputs = [Spec(name, t.shape, t.dtype.as_numpy_dtype)
                       for name, t in zip(self.model.input_names, self.model.inputs)]
        self.output_names = list(self.model.output_names)

    def input_specs(self):
        """Integer inputs feeding an Embedding take its vocabulary; an input rescaled by ~1/255 takes pixels."""
        tf = _tf()
        ranges, pixels = {}, set()
        by_id = {id(t): n for n, t in zip(self.model.input_names, self.model.inputs)}
        for layer in self.model.layers:
            try:
                feeds = layer.input if isinstance(layer.input, list) else [layer.input]
            except (AttributeError, ValueError):
                continue
            names = [by_id[id(t)] for t in feeds if id(t) in by_id]
            if not names:
                continue
            if isinstance(layer, tf.keras.layers.Embedding):
                ranges[names[0]] = (0, int(layer.input_dim))
            if isinstance(layer, tf.keras.layers.Rescaling) and 0 < abs(float(np.max(layer.scale))) <= 1 / 100.0:
                pixels.add(names[0])
        return [verify_io.InputSpec(s.name, s.concrete(), s.dtype, ranges.get(s.name),
                                    True if s.name in pixels else None) for s in self.inputs]

    def run(self, feeds):
        return _run_keras(self.model, self.inputs, self.output_names, feeds)

    def _graph(self, model=None):
        tf = _tf()
        model = model or self.model
        specs = [tf.TensorSpec(s.concrete(), t.dtype) for s, t in zip(self.inputs, model.inputs)]
        fn = tf.function(lambda *xs: model(list(xs) if len(xs) > 1 else xs[0], training=False))
        return frozen_graph(fn.get_concrete_function(*specs))

    def perturbed(self):
        """The same network in float64 (same weights); else the graph without TF's optimizations."""
        try:
            model64 = float64_clone(self.model)
        except Exception:
            return super().perturbed()
        twin = KerasModel.__new__(KerasModel)
        twin.model, twin.inputs, twin.output_names = model64, self.inputs, self.output_names
        return twin, "the Keras model in float64"


def _run_keras(model, specs, output_names, feeds):
    outs = model([feeds[s.name] for s in specs] if len(specs) > 1 else feeds[specs[0].name], training=False)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    return [(n, np.asarray(o)) for n, o in zip(output_names, outs)]


def float64_clone(model):
    """The Keras model rebuilt with every float32 layer in float64, carrying the same weights."""
    tf = _tf()

    def widen(value):
        if isinstance(value, dict):
            return {k: widen(v) for k, v in value.items()}
        if isinstance(value, list):
            return [widen(v) for v in value]
        return "float64" if value == "float32" else value

    config = widen(model.get_config())
    clone = model.__class__.from_config(config) if isinstance(model, tf.keras.Sequential) else \
        tf.keras.Model.from_config(config)
    clone.set_weights([w.astype(np.float64) if w.dtype == np.float32 else w for w in model.get_weights()])
    return clone


class SavedModel(_GraphBacked, SignatureModel):
    def __init__(self, path, args):
        SignatureModel.__init__(self, path, args.saved_model_tags or "serve", args.signature_name or "serving_default")

    def _graph(self):
        # the signature's inputs and outputs flatten in sorted-name order, as self.inputs and self.output_names
        return frozen_graph(self.fn)


class FrozenGraph(_GraphBacked):
    def __init__(self, path, args):
        tf = _tf()
        graph_def = tf.compat.v1.GraphDef()
        try:
            with open(path, "rb") as fh:
                graph_def.ParseFromString(fh.read())
        except Exception as exc:
            reject(f"{path}: not a frozen GraphDef ({first_line(exc)})")
        in_names = csv(args.input_arrays) or [n.name for n in graph_def.node if n.op == "Placeholder"]
        out_names = csv(args.output_arrays) or csv(getattr(args, "output_node_names", None))
        if not in_names or not out_names:
            reject(f"{path}: a frozen graph needs --input_arrays and --output_arrays")
        self.graph_def = graph_def
        graph = tf.Graph()
        with graph.as_default():
            tf.compat.v1.import_graph_def(graph_def, name="")
        given = shapes(args.input_shapes)
        self.inputs = []
        for i, name in enumerate(in_names):
            try:
                t = graph.get_tensor_by_name(_tensor_name(name))
            except (KeyError, ValueError):
                reject(f"{path}: no tensor '{name}' in the graph")
            shape = given[i] if i < len(given) else (t.shape.as_list() if t.shape.rank is not None else None)
            if shape is None:
                reject(f"{path}: input '{name}' has unknown rank; give --input_shapes")
            self.inputs.append(Spec(name, shape, t.dtype.as_numpy_dtype))
        self.output_names = out_names
        for name in out_names:
            try:
                graph.get_tensor_by_name(_tensor_name(name))
            except (KeyError, ValueError):
                reject(f"{path}: no tensor '{name}' in the graph")
        self._runner = GraphRunner(graph_def, in_names, out_names)

    def _graph(self):
        return self.graph_def, [s.name for s in self.inputs], self.output_names

    def run(self, feeds):
        return list(zip(self.output_names, self._runner.run([feeds[s.name] for s in self.inputs])))


class TFLiteSSD:
    """An SSD .tflite: returns the raw box encodings and class predictions (the post-processing op's inputs,
    read with all tensors preserved) and checks the op's four outputs."""

    POSTPROCESS = "TFLite_Detection_PostProcess"

    def __init__(self, path, args):
        tf = _tf()
        try:
            self.interp = tf.lite.Interpreter(model_path=path, experimental_preserve_all_tensors=True)
        except Exception as exc:
            reject(f"{path}: cannot load TFLite model ({first_line(exc)})")
        self.interp.allocate_tensors()
        self.max_detections = int(args.max_detections or 10)
        self.in_detail = self.interp.get_input_details()[0]
        self.inputs = [Spec("normalized_input_image_tensor", self.in_detail["shape"], np.float32)]
        ops = [op for op in self.interp._get_ops_details() if op["op_name"] == self.POSTPROCESS]
        self.postprocess = ops[0] if ops else None
        tensors = {d["index"]: d for d in self.interp.get_tensor_details()}
        if self.postprocess is not None:
            box, cls = self.postprocess["inputs"][0], self.postprocess["inputs"][1]
        else:  # no op: the model's outputs are the raw outputs (box encodings end in 4)
            outs = self.interp.get_output_details()
            box = next(d["index"] for d in outs if d["shape"][-1] == 4)
            cls = next(d["index"] for d in outs if d["index"] != box)
        self.raw = {"box_encodings": tensors[box], "class_predictions": tensors[cls]}
        self.checks = []

    def details(self):
        scale, zero = self.in_detail["quantization"]
        info = {"inputs": {"normalized_input_image_tensor": {
            "shape": self.in_detail["shape"], "dtype": np.dtype(self.in_detail["dtype"]).name, "scale": scale,
            "zero_point": zero}},
            "outputs": {d["name"]: {"shape": d["shape"], "dtype": np.dtype(d["dtype"]).name}
                        for d in self.interp.get_output_details()},
            "postprocess_op": self.postprocess is not None}
        info["quant_scales"] = {n: d["quantization"][0] for n, d in self.raw.items() if d["quantization"][0]}
        return info

    def run(self, feeds):
        x = feeds["normalized_input_image_tensor"]
        self.interp.set_tensor(self.in_detail["index"], quantize(x, self.in_detail))
        self.interp.invoke()
        out = [(n, dequantize(self.interp.get_tensor(d["index"]), d)) for n, d in self.raw.items()]
        if self.postprocess is not None:
            self.checks = self._check_detections()
        return out

    def _check_detections(self):
        tensors = {d["index"]: d for d in self.interp.get_tensor_details()}
        outs = [self.interp.get_tensor(i) for i in self.postprocess["outputs"]]
        shapes = [list(tensors[i]["shape"]) for i in self.postprocess["outputs"]]
        n = self.max_detections
        want = [[1, n, 4], [1, n], [1, n], [1]]
        num = float(outs[3].reshape(-1)[0])
        return [
            {"name": "postprocess output shapes", "passed": shapes == want, "detail": f"{shapes}, expected {want}"},
            {"name": "num_detections <= max_detections", "passed": 0 <= num <= n,
             "detail": f"num_detections {num:g}, max_detections {n}"},
        ]


LOADERS = {
    "keras": KerasModel,
    "keras_saved_model": KerasModel,
    "tf_saved_model": SavedModel,
    "tf_hub": SavedModel,
    "tf_frozen_model": FrozenGraph,
    "tflite": lambda path, args: TFLiteModel(path),
    "tflite_ssd": TFLiteSSD,
}


def load(fmt, path, args):
    if fmt not in LOADERS:
        reject(f"this stack cannot run format '{fmt}'")
    return LOADERS[fmt](path, args)
