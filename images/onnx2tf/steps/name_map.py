"""Names TensorFlow accepts, and the user's names back.

ONNX allows any string as a tensor or node name; exporters other than torch.onnx use that (Paddle2ONNX:
'relu_0.tmp_0@RENAME@block0@0', tf2onnx: 'model/conv2d/BiasAdd;model/conv2d/Conv2D:0', hand-edited graphs: spaces,
brackets, quotes, a leading dash). onnx2tf turns names into TensorFlow op and Keras layer names, which allow far
less, and fails deep inside Keras on some of them. So every name outside a conservative safe set is replaced before
onnx2tf sees the graph (in the graph, its subgraphs and every reference to it), and the map is kept: the converted
.tflite gets the user's input and output names back in its signature, and errors and the manifest speak the user's
names.
"""

import hashlib
import re

SAFE = re.compile(r"^[A-Za-z/][A-Za-z0-9_./-]{0,127}$")  # torch.onnx's own names ("/conv1/Conv") pass as they are
UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9_]+")


def _safe_form(name, taken):
    base = UNSAFE_CHARS.sub("_", name).strip("_") or "t"
    if not base[0].isalpha():
        base = "n_" + base
    if len(base) > 96:
        base = base[:96] + "_" + hashlib.sha1(name.encode()).hexdigest()[:8]
    safe, k = base, 1
    while safe in taken:
        safe, k = f"{base}_{k}", k + 1
    return safe


def _graphs(graph):
    """The graph and every subgraph (If/Loop/Scan bodies), outermost first."""
    import onnx

    yield graph
    for node in graph.node:
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield from _graphs(a.g)
            elif a.type == onnx.AttributeProto.GRAPHS:
                for g in a.graphs:
                    yield from _graphs(g)


def _all_names(graph):
    """Every tensor name (values, initializers) and node name in the graph and its subgraphs."""
    tensors, nodes = [], []
    for g in _graphs(graph):
        tensors += [v.name for v in list(g.input) + list(g.output) + list(g.value_info)]
        tensors += [t.name for t in g.initializer] + [t.values.name for t in g.sparse_initializer]
        for node in g.node:
            tensors += list(node.input) + list(node.output)
            nodes.append(node.name)
    return tensors, nodes


def sanitize(model):
    """(a copy of the model with TensorFlow-safe names, {safe name: original} for its tensors and nodes); the map
    is empty and the model returned as it is when every name is already safe."""
    import onnx

    tensors, nodes = _all_names(model.graph)
    bad_tensors = [n for n in dict.fromkeys(tensors) if n and not SAFE.match(n)]
    bad_nodes = [n for n in dict.fromkeys(nodes) if n and not SAFE.match(n)]
    if not bad_tensors and not bad_nodes:
        return model, {}
    taken = set(tensors) | set(nodes)
    renamed = {}
    for name in bad_tensors:
        renamed[name] = _safe_form(name, taken)
        taken.add(renamed[name])
    node_names = {}
    for name in bad_nodes:
        node_names[name] = _safe_form(name, taken)
        taken.add(node_names[name])
    result = onnx.ModelProto()
    result.CopyFrom(model)
    for g in _graphs(result.graph):
        for v in list(g.input) + list(g.output) + list(g.value_info):
            v.name = renamed.get(v.name, v.name)
        for t in g.initializer:
            t.name = renamed.get(t.name, t.name)
        for t in g.sparse_initializer:
            t.values.name = renamed.get(t.values.name, t.values.name)
        for node in g.node:
            node.input[:] = [renamed.get(n, n) for n in node.input]
            node.output[:] = [renamed.get(n, n) for n in node.output]
            node.name = node_names.get(node.name, node.name)
    return result, {safe: original for original, safe in list(renamed.items()) + list(node_names.items())}


def replacement_file(path, mapping, work):
    """The user's --param_replacement JSON with its op names in their safe form (a copy in `work`)."""
    import json
    import os

    if not mapping or not path:
        return path
    safe = {original: s for s, original in mapping.items()}
    with open(path) as fh:
        doc = json.load(fh)
    for op in doc.get("operations", []) if isinstance(doc, dict) else []:
        if isinstance(op, dict) and op.get("op_name") in safe:
            op["op_name"] = safe[op["op_name"]]
    copy = os.path.join(work, "param_replacement_safe_names.json")
    with open(copy, "w") as fh:
        json.dump(doc, fh)
    return copy


def speak(text, mapping):
    """`text` with each safe name replaced by the user's (longest first, so no name eats part of another)."""
    if not mapping or not text:
        return text
    pattern = re.compile("|".join(re.escape(s) for s in sorted(mapping, key=len, reverse=True)))
    return pattern.sub(lambda m: mapping[m.group(0)], text)


def _key(name):
    """A signature name as onnx2tf may have spelt a safe name (':0' dropped, '/' and '.' as '_')."""
    return name.split(":")[0].replace("/", "_").replace(".", "_")


def restore(tflite_path, mapping):
    """Give the .tflite's signature inputs and outputs (and their tensors) the user's names back; returns how many
    were renamed."""
    if not mapping:
        return 0
    from tensorflow.lite.tools import flatbuffer_utils

    by_key = {_key(safe): original for safe, original in mapping.items()}
    model = flatbuffer_utils.read_model(tflite_path)
    count = 0
    for sig in model.signatureDefs or []:
        subgraph = model.subgraphs[sig.subgraphIndex]
        for entry in list(sig.inputs or []) + list(sig.outputs or []):
            name = entry.name.decode() if isinstance(entry.name, bytes) else entry.name
            original = mapping.get(name) or by_key.get(_key(name))
            if original is None:
                continue
            entry.name = original.encode()
            subgraph.tensors[entry.tensorIndex].name = original.encode()
            count += 1
    if count:
        flatbuffer_utils.write_model(model, tflite_path)
    return count
