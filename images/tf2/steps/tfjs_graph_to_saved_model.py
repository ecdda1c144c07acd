"""TF.js graph model -> TensorFlow SavedModel (which tensorflowjs_converter does not offer), so that the TFLite
converter can take it from there.

    tfjs_graph_to_saved_model.py --input DIR/model.json --out OUT [--input_names a,b --output_names y]
The graph (modelTopology, a GraphDef in JSON) gets its weights back as Const values; the fused ops the TF.js
converter introduces are split back into TensorFlow's own ops; the signature comes from model.json, or from
--input_names/--output_names (the host passes what the TF.js runtime would take for a model.json without one:
its Placeholders and the nodes nothing consumes). Names may be op (x) or tensor (x:0) names. Writes OUT/saved_model.
"""

import argparse
import json
import os

from common import csv, first_line, reject, step_done

FUSED = {"FusedDepthwiseConv2dNative": "DepthwiseConv2dNative", "_FusedConv2D": "Conv2D",
         "_FusedDepthwiseConv2dNative": "DepthwiseConv2dNative", "_FusedMatMul": "MatMul"}
DROP_ATTRS = ("fused_ops", "num_args", "epsilon", "leakyrelu_alpha", "num_host_args", "filter_format")
ACTIVATIONS = {"Relu", "Relu6", "Elu", "Selu", "Tanh", "Sigmoid", "LeakyRelu"}


def unfuse(graph_def, tf):
    """Replace each fused node N by base op (N/unfused) [-> BiasAdd (N/bias)] [-> activation], the last
    one named N so that its consumers are unchanged."""
    nodes = []
    for node in graph_def.node:
        if node.op not in FUSED:
            nodes.append(node)
            continue
        ops = [o.decode() if isinstance(o, bytes) else o for o in node.attr["fused_ops"].list.s]
        extra = list(node.input[2:])
        chain = []
        base = tf.compat.v1.NodeDef(name=node.name + "/unfused", op=FUSED[node.op], input=list(node.input[:2]))
        for key, value in node.attr.items():
            if key not in DROP_ATTRS:
                base.attr[key].CopyFrom(value)
        chain.append(base)
        dtype = node.attr["T"]
        for op in ops:
            if op in ("NoOp", ""):
                continue
            if op == "BiasAdd":  # TF.js fuses any broadcasting add (even of a 2-D tensor) as its "BiasAdd"
                nchw = node.attr["data_format"].s in (b"NCHW", "NCHW") if "data_format" in node.attr else False
                n = tf.compat.v1.NodeDef(name=node.name + "/bias", op="BiasAdd" if nchw else "AddV2",
                                         input=[chain[-1].name, extra.pop(0)])
                n.attr["T"].CopyFrom(dtype)
                if nchw:
                    n.attr["data_format"].CopyFrom(node.attr["data_format"])
            elif op in ACTIVATIONS:
                n = tf.compat.v1.NodeDef(name=node.name + "/" + op.lower(), op=op, input=[chain[-1].name])
                n.attr["T"].CopyFrom(dtype)
                if op == "LeakyRelu":
                    n.attr["alpha"].CopyFrom(node.attr["leakyrelu_alpha"])
            elif op == "Prelu":
                alpha = extra.pop(0)
                pos = tf.compat.v1.NodeDef(name=node.name + "/prelu_pos", op="Relu", input=[chain[-1].name])
                neg = tf.compat.v1.NodeDef(name=node.name + "/prelu_neg", op="Neg", input=[chain[-1].name])
                negr = tf.compat.v1.NodeDef(name=node.name + "/prelu_negr", op="Relu", input=[neg.name])
                scaled = tf.compat.v1.NodeDef(name=node.name + "/prelu_scaled", op="Mul", input=[alpha, negr.name])
                n = tf.compat.v1.NodeDef(name=node.name + "/prelu", op="Sub", input=[pos.name, scaled.name])
                for m in (pos, neg, negr, scaled, n):
                    m.attr["T"].CopyFrom(dtype)
                chain += [pos, neg, negr, scaled]
            else:
                reject(f"the graph model fuses '{op}' into {node.name}, which this step cannot split")
            chain.append(n)
        chain[-1].name, chain[0].name = node.name, (node.name + "/unfused" if len(chain) > 1 else node.name)
        if len(chain) > 1:
            chain[1].input[0] = chain[0].name
        nodes.extend(chain)
    del graph_def.node[:]
    graph_def.node.extend(nodes)
    return graph_def


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
    from tensorflowjs.read_weights import read_weights

    with open(args.input) as fh:
        doc = json.load(fh)
    try:
        graph_def = json_format.ParseDict(doc["modelTopology"], tf.compat.v1.GraphDef())
    except Exception as exc:
        reject(f"{args.input}: modelTopology is not a GraphDef ({first_line(exc)})")
    weights = {w["name"]: w["data"] for w in read_weights(doc.get("weightsManifest", []),
                                                           os.path.dirname(args.input), flatten=True)}
    for node in graph_def.node:
        if node.name in weights:
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(weights[node.name]))
    graph_def = unfuse(graph_def, tf)
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
              unfused=sum(1 for n in graph_def.node if n.name.endswith("/unfused")))


if __name__ == "__main__":
    main()
