"""Load a model of a given format and run it on named inputs (TF2 stack). Used by run_model.py."""

import os

import numpy as np

from common import csv, first_line, reject, shapes


class Spec:
    def __init__(self, name, shape, dtype):
        self.name = name
        self.shape = [int(d) if d is not None and d >= 0 else None for d in shape]
        self.dtype = np.dtype(dtype)

    def to_json(self):
        return {"name": self.name, "shape": self.shape, "dtype": self.dtype.name}


def _tf():
    import tensorflow as tf

    return tf


def load_keras(path):
    tf = _tf()
    try:
        return tf.keras.models.load_model(path, compile=False)
    except Exception as exc:  # h5py, keras and TF raise many types for unusable files
        reject(f"{path}: cannot load as a Keras model ({first_line(exc)})")


class KerasModel:
    def __init__(self, path, args):
        self.model = load_keras(path)
        self.inputs = [Spec(name, t.shape, t.dtype.as_numpy_dtype)
                       for name, t in zip(self.model.input_names, self.model.inputs)]
        self.output_names = list(self.model.output_names)

    def run(self, feeds):
        outs = self.model([feeds[s.name] for s in self.inputs] if len(self.inputs) > 1 else feeds[self.inputs[0].name],
                          training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        return [(n, np.asarray(o)) for n, o in zip(self.output_names, outs)]


class SavedModel:
    def __init__(self, path, args):
        tf = _tf()
        tags = csv(args.saved_model_tags) or ["serve"]
        try:
            loaded = tf.saved_model.load(path, tags=tags)
        except Exception as exc:
            reject(f"{path}: cannot load SavedModel with tags {','.join(tags)} ({first_line(exc)})")
        sig = args.signature_name or "serving_default"
        if sig not in loaded.signatures:
            reject(f"{path}: no signature '{sig}'; signatures: {', '.join(loaded.signatures) or 'none'}")
        self.loaded, self.fn = loaded, loaded.signatures[sig]
        specs = self.fn.structured_input_signature[1]
        self.inputs = [Spec(name, specs[name].shape, specs[name].dtype.as_numpy_dtype) for name in sorted(specs)]
        self.output_names = sorted(self.fn.structured_outputs)

    def run(self, feeds):
        tf = _tf()
        result = self.fn(**{s.name: tf.constant(feeds[s.name]) for s in self.inputs})
        return [(n, result[n].numpy()) for n in self.output_names]


class FrozenGraph:
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
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf.compat.v1.import_graph_def(graph_def, name="")
        given = shapes(args.input_shapes)
        self.inputs = []
        for i, name in enumerate(in_names):
            try:
                t = self.graph.get_tensor_by_name(name if ":" in name else name + ":0")
            except (KeyError, ValueError):
                reject(f"{path}: no tensor '{name}' in the graph")
            shape = given[i] if i < len(given) else (t.shape.as_list() if t.shape.rank is not None else None)
            if shape is None:
                reject(f"{path}: input '{name}' has unknown rank; give --input_shapes")
            self.inputs.append(Spec(name, shape, t.dtype.as_numpy_dtype))
        self.output_names = out_names
        for name in out_names:
            try:
                self.graph.get_tensor_by_name(name if ":" in name else name + ":0")
            except (KeyError, ValueError):
                reject(f"{path}: no tensor '{name}' in the graph")
        self.session = tf.compat.v1.Session(graph=self.graph)

    def run(self, feeds):
        fetch = [n if ":" in n else n + ":0" for n in self.output_names]
        feed = {(s.name if ":" in s.name else s.name + ":0"): feeds[s.name] for s in self.inputs}
        return list(zip(self.output_names, self.session.run(fetch, feed)))


class TFLiteModel:
    """The TFLite interpreter; quantized inputs and outputs are (de)quantized so comparisons are in float."""

    def __init__(self, path, args):
        tf = _tf()
        self.path = path
        try:
            self.interp = tf.lite.Interpreter(model_path=path, num_threads=os.cpu_count())
        except Exception as exc:
            reject(f"{path}: cannot load TFLite model ({first_line(exc)})")
        sigs = self.interp.get_signature_list()
        self.runner = self.interp.get_signature_runner(next(iter(sigs))) if len(sigs) == 1 else None
        if self.runner is not None:
            self.in_details = self.runner.get_input_details()
            self.out_details = self.runner.get_output_details()
            self.output_names = list(sigs[next(iter(sigs))]["outputs"])
        else:
            self.interp.allocate_tensors()
            self.in_details = {d["name"]: d for d in self.interp.get_input_details()}
            self.out_details = {d["name"]: d for d in self.interp.get_output_details()}
            self.output_names = list(self.out_details)
        self.inputs = [Spec(n, d.get("shape_signature", d["shape"]), np.float32 if _quantized(d) else d["dtype"])
                       for n, d in self.in_details.items()]

    def op_counts(self):
        """Operators as stored in the model (the XNNPACK delegate would hide the ops it takes over)."""
        tf = _tf()
        plain = tf.lite.Interpreter(model_path=self.path, experimental_op_resolver_type=(
            tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
        counts = {}
        for op in plain._get_ops_details():
            counts[op["op_name"]] = counts.get(op["op_name"], 0) + 1
        return counts

    def details(self):
        def pack(d):
            scale, zero = d["quantization"]
            return {"shape": d["shape"], "dtype": np.dtype(d["dtype"]).name, "scale": scale, "zero_point": zero}
        return {"inputs": {n: pack(d) for n, d in self.in_details.items()},
                "outputs": {n: pack(d) for n, d in self.out_details.items()}}

    def run(self, feeds):
        q = {n: _quantize(feeds[n], self.in_details[n]) for n in self.in_details}
        if self.runner is not None:
            result = self.runner(**q)
            raw = [(n, result[n]) for n in self.output_names]
        else:
            for n, d in self.in_details.items():
                if list(d["shape"]) != list(q[n].shape):
                    self.interp.resize_tensor_input(d["index"], q[n].shape)
            self.interp.allocate_tensors()
            for n, d in self.in_details.items():
                self.interp.set_tensor(d["index"], q[n])
            self.interp.invoke()
            raw = [(n, self.interp.get_tensor(self.out_details[n]["index"])) for n in self.output_names]
        return [(n, _dequantize(v, self.out_details[n])) for n, v in raw]


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
        self.interp.set_tensor(self.in_detail["index"], _quantize(x, self.in_detail))
        self.interp.invoke()
        out = [(n, _dequantize(self.interp.get_tensor(d["index"]), d)) for n, d in self.raw.items()]
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


def _quantized(d):
    return np.dtype(d["dtype"]) in (np.int8, np.uint8, np.int16) and d["quantization"][0] != 0


def _quantize(x, d):
    dtype = np.dtype(d["dtype"])
    if not _quantized(d):
        return np.asarray(x).astype(dtype)
    scale, zero = d["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(np.asarray(x, np.float64) / scale + zero), info.min, info.max).astype(dtype)


def _dequantize(v, d):
    if not _quantized(d):
        return np.asarray(v)
    scale, zero = d["quantization"]
    return ((np.asarray(v, np.float64) - zero) * scale).astype(np.float32)


LOADERS = {
    "keras": KerasModel,
    "keras_saved_model": KerasModel,
    "tf_saved_model": SavedModel,
    "tf_hub": SavedModel,
    "tf_frozen_model": FrozenGraph,
    "tflite": TFLiteModel,
    "tflite_ssd": TFLiteSSD,
}


def load(fmt, path, args):
    if fmt not in LOADERS:
        reject(f"this stack cannot run format '{fmt}'")
    return LOADERS[fmt](path, args)
