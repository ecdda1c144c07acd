"""TF.js graph model -> TensorFlow SavedModel (which tensorflowjs_converter does not offer), so that the TFLite
converter can take it from there.

    tfjs_graph_to_saved_model.py --input DIR/model.json --out OUT [--input_names a,b --output_names y]
The graph (modelTopology, a GraphDef in JSON) gets its weights back as Const values (quantized weights dequantized
as the TF.js runtime does it: q * scale + min in double precision, then float32; float16 widened exactly). What
the TF.js converter writes that TensorFlow cannot run as written (tfjs_emitted_ops.json: its fused ops with each
fused_ops list they can carry, the TF.js-only Prelu op, BiasAdd made from any Add) is rebuilt from TensorFlow's own
ops as the TF.js runtime computes it; a node the table does not know, or knows as unsplittable, is refused in one
line. The signature comes from model.json, or from --input_names/--output_names (the host passes what the TF.js
runtime would take for a model.json without one: its Placeholders and the nodes nothing consumes). Names may be op
(x) or tensor (x:0) names. Writes OUT/saved_model.
"""

import argparse
import base64
import json
import os

from common import csv, first_line, reject, step_done

TABLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tfjs_emitted_ops.json")
UNARY = ("Relu", "Relu6", "Elu", "Sigmoid", "Tanh", "LeakyRelu")  # fused activations TensorFlow has as ops
LEAKYRELU_ALPHA = 0.2  # the default of leakyrelu_alpha on the fused ops, in TensorFlow and in TF.js


def load_table(path=TABLE):
    with open(path) as fh:
        return json.load(fh)


def text(value):
    return base64.b64decode(value).decode()


def fused_ops_of(node):
    """The fused_ops list of a node of model.json (bytes are base64 in the JSON form of a GraphDef)."""
    return [text(s) for s in node.get("attr", {}).get("fused_ops", {}).get("list", {}).get("s", [])]


def label(op, fused):
    return f"{op}[{','.join(fused)}]" if fused else op


class Rebuild:
    """The TensorFlow nodes that replace one node of the table; the last one keeps its name (and so its consumers)."""

    def __init__(self, node, taken):
        self.node, self.taken, self.nodes = node, taken, []
        inputs = list(node.get("input", []))
        self.data = [i for i in inputs if not i.startswith("^")]
        self.controls = [i for i in inputs if i.startswith("^")]
        self.dtype = node.get("attr", {}).get("T", {"type": "DT_FLOAT"})

    def add(self, op, inputs, part, **attr):
        name, k = f"{self.node['name']}/{part}", 1
        while name in self.taken:
            name, k = f"{self.node['name']}/{part}_{k}", k + 1
        self.taken.add(name)
        controls = [] if self.nodes else self.controls  # the first node waits for what the original waited for
        new = {"name": name, "op": op, "input": list(inputs) + controls, "attr": dict({"T": self.dtype}, **attr)}
        self.nodes.append(new)
        return name

    def prelu(self, x, alpha):
        """prelu(x) = x where x >= 0, alpha * x elsewhere, as Relu(x) + (-alpha) * Relu(-x) (Keras' own form)."""
        pos = self.add("Relu", [x], "prelu_pos")
        neg = self.add("Relu", [self.add("Neg", [x], "prelu_negx")], "prelu_neg")
        scaled = self.add("Mul", [self.add("Neg", [alpha], "prelu_negalpha"), neg], "prelu_scaled")
        return self.add("AddV2", [pos, scaled], "prelu")

    def done(self):
        self.nodes[-1]["name"] = self.node["name"]
        return self.nodes


def split_fused(node, fused, table, taken, attrs_of, source):
    """Base op (N/unfused) -> BiasAdd as an add -> activation, as TF.js's fused kernels compute them."""
    name, attr = node["name"], node.get("attr", {})
    r = Rebuild(node, taken)
    args = r.data[2:]
    wanted = sum(table["parts"][p] for p in fused)
    if len(args) != wanted:
        reject(f"{source}: node '{name}' ({label(node['op'], fused)}) has {len(args)} extra input(s) where its "
               f"fused_ops take {wanted}")
    base = table["fused"][node["op"]]
    keep = attrs_of(base)
    x = r.add(base, r.data[:2], "unfused")
    r.nodes[0]["attr"] = {k: v for k, v in attr.items() if k in keep}
    nchw = text(attr.get("data_format", {}).get("s", "")) == "NCHW"
    for part in fused:
        if part == "NoOp":
            continue
        if part == "BiasAdd":
            # TF.js adds its argument with broadcasting: a bias, or (normalize_bias_add) any tensor, e.g. a residual;
            # a 1-D bias of an NCHW convolution goes along the channels, as BiasAdd does
            x = (r.add("BiasAdd", [x, args.pop(0)], "bias", data_format=attr["data_format"]) if nchw
                 else r.add("AddV2", [x, args.pop(0)], "bias"))
        elif part == "Prelu":
            if nchw:
                reject(f"{source}: node '{name}' ({label(node['op'], fused)}) is NCHW, whose PReLU alphas this "
                       "step cannot place")
            x = r.prelu(x, args.pop(0))
        elif part == "LeakyRelu":
            x = r.add("LeakyRelu", [x], "leakyrelu", alpha=attr.get("leakyrelu_alpha", {"f": LEAKYRELU_ALPHA}))
        elif part in UNARY:
            x = r.add(part, [x], part.lower())
        else:  # a part no split entry uses (the unit tests check the table against this)
            reject(f"{source}: node '{name}' ({label(node['op'], fused)}): this step cannot rebuild '{part}'")
    return r.done()


def split_single(node, taken, source):
    """The TF.js converter's own single ops: Prelu (fuse_prelu), and BiasAdd, which TF.js runs as a broadcasting add
    (normalize_bias_add makes one of any Add after a Conv2D, DepthwiseConv2dNative or MatMul)."""
    r = Rebuild(node, taken)
    if len(r.data) != 2:
        reject(f"{source}: node '{node['name']}' ({node['op']}) has {len(r.data)} inputs, not 2")
    if node["op"] == "Prelu":
        r.prelu(*r.data)
    else:
        r.add("AddV2", r.data, "add")
    return r.done()


def unfuse(nodes, table, attrs_of, source):
    """The nodes of modelTopology (JSON dicts) with every node the table lists rebuilt from TensorFlow ops, and
    {entry label: count} of what was split. attrs_of(op): the attribute names TensorFlow's op takes."""
    entries = {(e["op"], tuple(e["fused_ops"])): e for e in table["entries"]}
    listed = {e["op"] for e in table["entries"]}
    taken = {n["name"] for n in nodes}
    out, split = [], {}
    for node in nodes:
        op = node["op"]
        if op not in listed:
            out.append(node)
            continue
        fused = fused_ops_of(node) if op in table["fused"] else []
        entry = entries.get((op, tuple(fused)))
        if entry is None:
            reject(f"{source}: node '{node['name']}' is {label(op, fused)}, which tensorflowjs_converter "
                   f"{table['tensorflowjs']} does not write (tfjs_emitted_ops.json), so this step cannot split it")
        if not entry["split"]:
            reject(f"{source}: node '{node['name']}' is {label(op, fused)}: {entry['why']}")
        if op in table["fused"]:
            out.extend(split_fused(node, fused, table, taken, attrs_of, source))
        else:
            out.extend(split_single(node, taken, source))
        split[label(op, fused)] = split.get(label(op, fused), 0) + 1
    return out, split


def tensor_name(name):
    """'x' (an op) and 'x:0' (a tensor) both name tensor x:0."""
    head, sep, index = name.rpartition(":")
    return name if sep and index.isdigit() else name + ":0"


def endpoints(graph, path, kind, names, signature):
    """{key: tensor} of the SavedModel signature: the given node names (keyed by node name), else model.json's
    signature (its keys)."""
    if names:
        pairs = [(tensor_name(n).rpartition(":")[0], tensor_name(n)) for n in names]
    elif signature.get(kind):
        pairs = [(key, tensor_name(entry.get("name", key))) for key, entry in signature[kind].items()]
    else:
        reject(f"{path}: the graph model has no {kind} in its signature and none were given (--{kind[:-1]}_names)")
    found = {}
    for key, name in pairs:
        try:
            found[key] = graph.get_tensor_by_name(name)
        except (KeyError, ValueError):
            reject(f"{path}: the graph has no tensor '{name}' (one of its {kind})")
    return found


def quantized_weights(doc):
    """{stored dtype: count} of the weights model.json declares quantized (float16, uint8, uint16)."""
    counts = {}
    for group in doc.get("weightsManifest", []):
        for w in group.get("weights", []):
            q = (w.get("quantization") or {}).get("dtype")
            if q:
                counts[q] = counts.get(q, 0) + 1
    return counts


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--input", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--saved_model_tags", default="serve")
    p.add_argument("--input_names")
    p.add_argument("--output_names")
    args = p.parse_args()
    import tensorflow as tf
    from google.protobuf import json_format
    from tensorflow.python.framework import op_def_registry
    from tensorflowjs.read_weights import read_weights

    with open(args.input) as fh:
        doc = json.load(fh)
    topology = dict(doc.get("modelTopology") or {})
    nodes, split = unfuse(list(topology.get("node", [])), load_table(),
                          lambda op: {a.name for a in op_def_registry.get(op).attr}, args.input)
    topology["node"] = nodes
    try:
        graph_def = json_format.ParseDict(topology, tf.compat.v1.GraphDef())
    except Exception as exc:
        reject(f"{args.input}: modelTopology is not a GraphDef ({first_line(exc)})")
    # tensorflowjs' own reader: uint8/uint16 as q * scale + min in float64, then float32, as TF.js's decodeWeight
    # computes them in JavaScript numbers before storing a Float32Array; float16 widened exactly
    weights = {w["name"]: w["data"] for w in read_weights(doc.get("weightsManifest", []),
                                                           os.path.dirname(args.input), flatten=True)}
    for node in graph_def.node:
        if node.name in weights:
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(weights[node.name]))
    signature = doc.get("signature") or {}
    graph = tf.Graph()
    with graph.as_default():
        try:
            tf.compat.v1.import_graph_def(graph_def, name="")
        except Exception as exc:
            reject(f"{args.input}: TensorFlow cannot import the graph ({first_line(exc)})")
        inputs = endpoints(graph, args.input, "inputs", csv(args.input_names), signature)
        outputs = endpoints(graph, args.input, "outputs", csv(args.output_names), signature)
        target = os.path.join(args.out, "saved_model")
        builder = tf.compat.v1.saved_model.Builder(target)
        sig = tf.compat.v1.saved_model.predict_signature_def(inputs, outputs)
        with tf.compat.v1.Session(graph=graph) as sess:
            builder.add_meta_graph_and_variables(sess, [t for t in args.saved_model_tags.split(",") if t],
                                                 signature_def_map={"serving_default": sig})
        builder.save()
    ops = sorted({n.op for n in graph_def.node})
    step_done(args.out, ["saved_model"], inputs=sorted(inputs), outputs=sorted(outputs), ops=ops,
              unfused=sum(1 for n in graph_def.node if n.name.endswith("/unfused")), split=split,
              dequantized=quantized_weights(doc))


if __name__ == "__main__":
    main()
