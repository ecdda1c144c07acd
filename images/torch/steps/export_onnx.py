"""PyTorch -> ONNX with torch.onnx.

    export_onnx.py --input MODEL --out DIR --input_shape 1,3,224,224[:...] [--model_code FILE.py:Class]
                   [--model_args JSON] [--opset N] [--dynamic_batch true] [--input_names a,b] [--output_names y]
                   [--exporter auto|dynamo|torchscript]
Writes DIR/model.onnx and DIR/step.json. TorchScript input goes through the TorchScript exporter (torch.export
cannot trace a ScriptModule); everything else through the dynamo exporter, torch.onnx's default.
"""

import os
import warnings

import onnx
import torch

import torch_models
from common import fail, first_line, step_done


MAX_NODES = 200  # node names listed in step.json (parameter-replacement JSON refers to them)


def onnx_io(model):
    def dims(value_info):
        return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]

    init = {i.name for i in model.graph.initializer}
    return ([{"name": i.name, "shape": dims(i)} for i in model.graph.input if i.name not in init],
            [{"name": o.name, "shape": dims(o)} for o in model.graph.output])


def main():
    p = torch_models.arguments()
    p.add_argument("--opset", type=int)
    p.add_argument("--dynamic_batch", default="false")
    p.add_argument("--exporter", default="auto")
    args = p.parse_args()

    model, kind, arrays, _, input_names, output_names = torch_models.prepared(args)
    exporter = args.exporter
    if exporter == "auto":
        exporter = "torchscript" if kind == "torchscript" else "dynamo"
    dynamic_axes = None
    if args.dynamic_batch == "true":
        dynamic_axes = {n: {0: "batch"} for n in input_names + output_names}
    target = os.path.join(args.out, "model.onnx")
    example = tuple(torch.from_numpy(a) for a in arrays)
    kwargs = dict(input_names=input_names, output_names=output_names, dynamic_axes=dynamic_axes)
    if args.opset:
        kwargs["opset_version"] = args.opset
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if exporter == "dynamo":
                program = torch.onnx.export(model, example, dynamo=True, external_data=False, optimize=True,
                                            verbose=False, **kwargs)
                program.save(target)
            else:
                torch.onnx.export(model, example, target, dynamo=False, do_constant_folding=True, **kwargs)
        except Exception as exc:
            fail(f"torch.onnx ({exporter} exporter) failed: {first_line(exc)}")
    exported = onnx.load(target)
    onnx.checker.check_model(exported)
    ins, outs = onnx_io(exported)
    opset = next((o.version for o in exported.opset_import if o.domain in ("", "ai.onnx")), None)
    op_types = {}
    for node in exported.graph.node:
        op_types[node.op_type] = op_types.get(node.op_type, 0) + 1
    step_done(args.out, ["model.onnx"], source_kind=kind, exporter=exporter, opset=opset,
              ir_version=exported.ir_version, inputs=ins, outputs=outs, dynamic_batch=args.dynamic_batch == "true",
              op_types=op_types, nodes=[{"name": n.name, "op_type": n.op_type} for n in exported.graph.node[:MAX_NODES]])


if __name__ == "__main__":
    main()
