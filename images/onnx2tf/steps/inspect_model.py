"""`orchestrator inspect` in the onnx2tf stack: ONNX models (external data files beside them are read for
their sizes only), SavedModels, and the readers every stack has (TFLite, TF.js model.json, Darknet .cfg).

    inspect_model.py --format F --input MODEL --out DIR
"""

import os

import model_info
import tf_model_info


def onnx_model(args):
    import onnx
    from onnx import helper

    model = onnx.load(args.input, load_external_data=False)
    graph = model.graph
    initialized = {t.name for t in graph.initializer}

    def value(v):
        t = v.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim] if t.HasField("shape") \
            else None
        try:
            dtype = str(helper.tensor_dtype_to_np_dtype(t.elem_type))
        except (KeyError, ValueError, TypeError):
            dtype = str(t.elem_type)
        return model_info.tensor(v.name, dims, dtype)

    ops = [(n.domain + "." if n.domain and n.domain != "ai.onnx" else "") + n.op_type for n in graph.node]
    params = 0
    for t in graph.initializer:
        n = 1
        for d in t.dims:
            n *= int(d)
        params += n
    folder = os.path.dirname(os.path.abspath(args.input))
    external = {e.value for t in graph.initializer for e in t.external_data if e.key == "location"}
    size = os.path.getsize(args.input) + sum(os.path.getsize(os.path.join(folder, f)) for f in external
                                             if os.path.isfile(os.path.join(folder, f)))
    producer = {"producer_name": model.producer_name, "producer_version": model.producer_version,
                "ir_version": model.ir_version,
                "opsets": {o.domain or "ai.onnx": o.version for o in model.opset_import}}
    return model_info.info("onnx", [value(v) for v in graph.input if v.name not in initialized],
                           [value(v) for v in graph.output], ops, params, size, producer,
                           {"node": model_info.count(ops)})


def saved_model(args):
    return tf_model_info.saved_model(args.input, args.saved_model_tags, args.signature_name, args.format)


if __name__ == "__main__":
    model_info.main({"onnx": onnx_model, "tf_saved_model": saved_model, "tf_hub": saved_model,
                     "tf_frozen_model": lambda a: tf_model_info.frozen_graph(a.input)})
