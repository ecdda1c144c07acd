"""model_info readers for the formats TensorFlow reads (SavedModels and frozen graphs), in every stack that has
TensorFlow (tf2, keras3, onnx2tf): a SavedModel's signature, and the ops of its graph and of the functions it
calls."""

import os

from model_info import count, info, size_of, tensor

# ops that move tensors or variables around, not compute: left out of a TensorFlow graph's histogram
PLUMBING = ("Const", "Identity", "IdentityN", "NoOp", "Placeholder", "VarHandleOp", "ReadVariableOp",
            "StatefulPartitionedCall", "PartitionedCall", "_Arg", "_Retval")


def graph_ops(graph_def):
    """Op names of a GraphDef and of every function in its library, plumbing left out."""
    nodes = list(graph_def.node) + [n for f in graph_def.library.function for n in f.node_def]
    return [n.op for n in nodes if n.op not in PLUMBING]


def _spec(name, spec):
    shape = spec.shape.as_list() if spec.shape.rank is not None else None
    return tensor(name, shape, spec.dtype.name)


def saved_model(path, tags=None, signature="serving_default", fmt="tf_saved_model"):
    from saved_model_runtime import SignatureModel
    from tensorflow.core.protobuf import saved_model_pb2

    model = SignatureModel(path, tags, signature)
    fn = model.fn
    _, kwargs = fn.structured_input_signature
    inputs = [_spec(n, s) for n, s in sorted(kwargs.items())]
    outputs = [_spec(n, t) for n, t in sorted(fn.structured_outputs.items())]
    ops = graph_ops(fn.graph.as_graph_def())
    params = sum(int(v.shape.num_elements() or 0) for v in fn.graph.variables)
    producer = {}
    pb = os.path.join(path, "saved_model.pb")
    if os.path.isfile(pb):
        proto = saved_model_pb2.SavedModel()
        with open(pb, "rb") as fh:
            proto.ParseFromString(fh.read())
        meta = proto.meta_graphs[0].meta_info_def if proto.meta_graphs else None
        if meta is not None:
            producer = {"tensorflow_version": meta.tensorflow_version, "tags": list(meta.tags)}
    notes = ["signature %s of %s" % (signature, ", ".join(sorted(model.loaded.signatures)))]
    return info(fmt, inputs, outputs, ops, params, size_of(path), producer, {"node": count(ops)}, notes)


def frozen_graph(path):
    import numpy as np
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    with open(path, "rb") as fh:
        graph_def.ParseFromString(fh.read())
    consumed = {i.lstrip("^").split(":")[0] for n in graph_def.node for i in n.input}
    inputs, outputs, params = [], [], 0
    for n in graph_def.node:
        if n.op == "Placeholder":
            dims = [d.size for d in n.attr["shape"].shape.dim] if "shape" in n.attr and \
                not n.attr["shape"].shape.unknown_rank else None
            inputs.append(tensor(n.name, dims, tf.dtypes.as_dtype(n.attr["dtype"].type).name))
        elif n.op == "Const":
            shape = [d.size for d in n.attr["value"].tensor.tensor_shape.dim]
            params += int(np.prod(shape)) if shape else 1
        elif n.name not in consumed and n.op not in ("NoOp", "Assert"):
            outputs.append(tensor(n.name, None, ""))
    ops = graph_ops(graph_def)
    producer = {"graph_version": graph_def.versions.producer}
    return info("tf_frozen_model", inputs, outputs, ops, params, size_of(path), producer, {"node": count(ops)})
