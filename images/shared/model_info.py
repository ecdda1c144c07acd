"""What a model is, read without running it: inputs, outputs, an op histogram, parameters, size and who wrote it.
`inspect` (inspect_model.py of each stack) and the conversion report (report_model.py) use it. The readers here
need no ML framework: TFLite through its flatbuffer schema (TensorFlow's or LiteRT's copy), TF.js model.json and
Darknet .cfg as text. Each stack's inspect_model.py adds the formats only its framework reads.

Every reader returns one dict:
  {"format", "inputs": [TENSOR], "outputs": [TENSOR], "ops": {op: count}, "op_kinds": {"builtin"|"custom"|"flex"|
   "layer"|"node": {op: count}}, "parameters", "size_bytes", "producer": {...}, "notes": [...]}
  TENSOR = {"name", "shape" (None: unknown dimension), "dtype", and for quantized tensors "scale", "zero_point"}
"""

import json
import os


def size_of(path):
    """Bytes of a file, or of every file under a folder."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


def tensor(name, shape, dtype, scale=None, zero_point=None):
    entry = {"name": name, "shape": [None if d is None or d < 0 else int(d) for d in shape] if shape is not None
             else None, "dtype": dtype}
    if scale is not None:
        entry.update(scale=scale, zero_point=zero_point)
    return entry


def count(names):
    counts = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def info(fmt, inputs, outputs, ops, parameters, size, producer=None, kinds=None, notes=()):
    return {"format": fmt, "inputs": inputs, "outputs": outputs, "ops": count(ops) if isinstance(ops, list) else ops,
            "op_kinds": kinds or {}, "parameters": parameters, "size_bytes": size, "producer": producer or {},
            "notes": list(notes)}


# -- TFLite --------------------------------------------------------------------------------------------------
def _schema():
    try:
        from tensorflow.lite.python import schema_py_generated as schema
    except ImportError:
        from ai_edge_litert import schema_py_generated as schema
    return schema


def _names(enum):
    return {v: k for k, v in vars(enum).items() if not k.startswith("_") and isinstance(v, int)}


def _text(value):
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else (value or "")


class TFLiteGraph:
    """A .tflite as stored: its first subgraph's tensors and operators, and the op names a device sees."""

    def __init__(self, path):
        schema = _schema()
        with open(path, "rb") as fh:
            self.model = schema.ModelT.InitFromPackedBuf(bytearray(fh.read()), 0)
        builtin, self.dtypes = _names(schema.BuiltinOperator), _names(schema.TensorType)
        self.codes = []
        for code in self.model.operatorCodes or []:
            number = max(code.builtinCode or 0, code.deprecatedBuiltinCode or 0)
            custom = _text(code.customCode)
            if custom:
                kind = "flex" if custom.startswith("Flex") else "custom"
                self.codes.append((custom, kind))
            else:
                self.codes.append((builtin.get(number, "BUILTIN_%d" % number), "builtin"))
        self.graph = self.model.subgraphs[0]
        self.tensors = self.graph.tensors or []
        self.operators = self.graph.operators or []

    def op_name(self, op):
        return self.codes[op.opcodeIndex][0]

    def tensor_info(self, index):
        t = self.tensors[index]
        shape = list(t.shapeSignature) if t.shapeSignature is not None and len(t.shapeSignature) else \
            list(t.shape if t.shape is not None else [])
        q = t.quantization
        scale = zero = None
        if q is not None and q.scale is not None and len(q.scale):
            scale = float(q.scale[0]) if len(q.scale) == 1 else [float(s) for s in q.scale]
            zero = int(q.zeroPoint[0]) if len(q.zeroPoint) == 1 else [int(z) for z in q.zeroPoint]
        return tensor(_text(t.name), shape, self.dtypes.get(t.type, str(t.type)).lower(), scale, zero)

    def is_constant(self, index):
        buf = self.model.buffers[self.tensors[index].buffer] if self.model.buffers else None
        return buf is not None and ((buf.data is not None and len(buf.data)) or (buf.size or 0) > 0)

    def parameters(self):
        total = 0
        for i, t in enumerate(self.tensors):
            if self.is_constant(i):
                n = 1
                for d in (t.shape if t.shape is not None else []):
                    n *= int(d)
                total += n
        return total

    def metadata(self):
        found = {}
        for m in self.model.metadata or []:
            buf = self.model.buffers[m.buffer]
            if buf.data is not None and len(buf.data) < 256:
                found[_text(m.name)] = bytes(bytearray(buf.data)).rstrip(b"\0").decode("utf-8", "replace")
        return found

    def signature_io(self):
        """({input name: tensor index}, {output name: tensor index}) of its one signature, else None."""
        sigs = self.model.signatureDefs or []
        if len(sigs) != 1:
            return None
        return ({_text(t.name): t.tensorIndex for t in sigs[0].inputs or []},
                {_text(t.name): t.tensorIndex for t in sigs[0].outputs or []})

    def io(self):
        def named(index, name):
            entry = self.tensor_info(index)
            if name and name != entry["name"]:
                entry["tensor"], entry["name"] = entry["name"], name
            return entry

        sig = self.signature_io()
        if sig:
            return [named(i, n) for n, i in sig[0].items()], [named(i, n) for n, i in sig[1].items()]
        return ([named(i, None) for i in self.graph.inputs], [named(i, None) for i in self.graph.outputs])


def tflite(path):
    g = TFLiteGraph(path)
    inputs, outputs = g.io()
    names = [g.op_name(op) for op in g.operators]
    kinds = {"builtin": {}, "custom": {}, "flex": {}}
    for op in g.operators:
        name, kind = g.codes[op.opcodeIndex]
        kinds[kind][name] = kinds[kind].get(name, 0) + 1
    meta = g.metadata()
    producer = {"description": _text(g.model.description), "schema_version": g.model.version}
    if "min_runtime_version" in meta:
        producer["min_runtime_version"] = meta["min_runtime_version"]
    notes = ["%d subgraphs: the first is shown" % len(g.model.subgraphs)] if len(g.model.subgraphs) > 1 else []
    if kinds["flex"]:
        notes.append("Flex ops need the Flex delegate (tensorflow-lite-select-tf-ops) in the app")
    return info("tflite", inputs, outputs, names, g.parameters(), size_of(path), producer, kinds, notes)


# -- TF.js model.json ----------------------------------------------------------------------------------------
def _weights(doc):
    total = 0
    for group in doc.get("weightsManifest") or []:
        for w in group.get("weights") or []:
            n = 1
            for d in w.get("shape") or []:
                n *= int(d)
            total += n
    return total


def _layers(config):
    for layer in config.get("layers") or []:
        yield layer
        inner = layer.get("config") or {}
        if isinstance(inner, dict) and "layers" in inner:  # a nested model
            for sub in _layers(inner):
                yield sub


def tfjs(path):
    with open(path, "rb") as fh:
        doc = json.loads(fh.read())
    topology = doc.get("modelTopology") or {}
    folder = os.path.dirname(os.path.abspath(path))
    shards = [os.path.join(folder, p) for g in doc.get("weightsManifest") or [] for p in g.get("paths") or []]
    size = os.path.getsize(path) + sum(os.path.getsize(s) for s in shards if os.path.isfile(s))
    producer = {k: doc[k] for k in ("format", "generatedBy", "convertedBy") if doc.get(k)}
    if "node" in topology or doc.get("format") == "graph-model":
        nodes = topology.get("node") or []
        sig = doc.get("signature") or {}

        def sig_tensors(group):
            out = []
            for name, t in sorted((sig.get(group) or {}).items()):
                dims = (t.get("tensorShape") or {}).get("dim") or []
                out.append(tensor(t.get("name", name), [int(d.get("size", -1)) for d in dims],
                                  str(t.get("dtype", "")).replace("DT_", "").lower()))
            return out

        inputs, outputs = sig_tensors("inputs"), sig_tensors("outputs")
        if not inputs:
            inputs = [tensor(n["name"], None, str((n.get("attr") or {}).get("dtype", {}).get("type", "")).replace(
                "DT_", "").lower()) for n in nodes if n.get("op") == "Placeholder"]
        ops = [n.get("op", "?") for n in nodes if n.get("op") not in ("Const", "Placeholder")]
        return info("tfjs_graph_model", inputs, outputs, ops, _weights(doc), size, producer,
                    {"node": count(ops)})
    config = topology.get("model_config", topology)
    config = config.get("config", config) if isinstance(config, dict) else {}
    layers = list(_layers(config))
    inputs = []
    for layer in layers:
        if layer.get("class_name") == "InputLayer":
            c = layer.get("config") or {}
            shape = c.get("batch_input_shape") or c.get("batch_shape")
            inputs.append(tensor(c.get("name", layer.get("name")), shape, c.get("dtype", "float32")))
    outputs = [tensor(o[0] if isinstance(o, list) else str(o), None, "") for o in config.get("output_layers") or []]
    ops = [layer.get("class_name", "?") for layer in layers if layer.get("class_name") != "InputLayer"]
    producer["keras_version"] = topology.get("keras_version")
    return info("tfjs_layers_model", inputs, outputs, ops, _weights(doc), size, producer, {"layer": count(ops)})


# -- Darknet .cfg ----------------------------------------------------------------------------------------------
def darknet(path):
    sections, net = [], {}
    with open(path) as fh:
        for raw in fh:
            line = raw.split("#", 1)[0].strip()
            if line.startswith("[") and line.endswith("]"):
                sections.append(line[1:-1].strip())
            elif "=" in line and sections and sections[-1] in ("net", "network"):
                key, value = line.split("=", 1)
                net[key.strip()] = value.strip()
    layers = [s for s in sections if s not in ("net", "network")]
    dims = [int(net.get(k, "0") or 0) for k in ("height", "width", "channels")]
    weights = os.path.splitext(path)[0] + ".weights"
    params = (os.path.getsize(weights) - 20) // 4 if os.path.isfile(weights) else None
    notes = [] if params is not None else ["no %s beside it: parameters not counted" % os.path.basename(weights)]
    outputs = [tensor("yolo_%d" % i, None, "float32") for i, s in enumerate(s for s in layers if s == "yolo")]
    return info("darknet", [tensor("input", [1] + dims, "float32")], outputs, layers, params,
                size_of(path) + (os.path.getsize(weights) if params is not None else 0), {"format": "Darknet cfg"},
                {"layer": count(layers)}, notes)


# -- Keras (any version: the model object's own API) -------------------------------------------------------------
def keras_model(model, path, fmt, producer):
    def spec(t, fallback):
        shape = getattr(t, "shape", None)
        dtype = getattr(t, "dtype", "")
        dtype = getattr(dtype, "name", dtype)
        return tensor(getattr(t, "name", fallback) or fallback, list(shape) if shape is not None else None,
                      str(dtype))

    def named(tensors, names, stem):  # the model's own input/output names (its layers'), not the graph tensors'
        names = list(names or [])
        return [dict(spec(t, stem % i), name=str(names[i]) if i < len(names) else spec(t, stem % i)["name"])
                for i, t in enumerate(tensors or [])]

    inputs = named(model.inputs, getattr(model, "input_names", None), "input_%d")
    outputs = named(model.outputs, getattr(model, "output_names", None), "output_%d")
    layers = []

    def walk(m):
        for layer in m.layers:
            if hasattr(layer, "layers") and layer.__class__.__name__ in ("Functional", "Sequential", "Model"):
                walk(layer)
            elif layer.__class__.__name__ != "InputLayer":  # a placeholder, not a computation
                layers.append(layer.__class__.__name__)

    walk(model)
    return info(fmt, inputs, outputs, layers, int(model.count_params()), size_of(path), producer,
                {"layer": count(layers)})


# format -> reader(args): the readers of this module, in every stack (args: inspect_model.py's arguments)
READERS = {"tflite": lambda a: tflite(a.input), "tfjs_layers_model": lambda a: tfjs(a.input),
           "tfjs_graph_model": lambda a: tfjs(a.input), "darknet": lambda a: darknet(a.input)}


def arguments(*options):
    """The command line of inspect_model.py and check_model.py: --format F --input MODEL --out DIR [--to T], and
    the format options named (--signature_name defaults to serving_default)."""
    import argparse

    p = argparse.ArgumentParser()
    for name in ("format", "input", "out"):
        p.add_argument("--" + name, required=True)
    p.add_argument("--to")
    for name in options:
        p.add_argument("--" + name, default="serving_default" if name == "signature_name" else None)
    return p.parse_args()


def main(readers):
    """inspect_model.py --format F --input MODEL --out DIR: step.json's info is what the reader found."""
    from step_sdk import first_line, reject, step_done

    args = arguments("signature_name", "saved_model_tags")
    reader = readers.get(args.format) or READERS.get(args.format)
    if reader is None:
        reject("%s: this stack cannot read format %s" % (os.path.basename(args.input), args.format))
    try:
        found = reader(args)
    except SystemExit:
        raise
    except Exception as exc:  # each framework raises its own types for unusable files
        reject("%s: cannot read it as %s (%s)" % (os.path.basename(args.input), args.format, first_line(exc)))
    step_done(args.out, [], **found)
