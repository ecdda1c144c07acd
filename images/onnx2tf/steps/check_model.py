"""`orchestrator check` in the onnx2tf stack: which ONNX ops of a model onnx2tf has no converter for (onnx2tf
keeps one module per ONNX op it converts, in onnx2tf/ops/).

    check_model.py --format onnx --input MODEL --to T --out DIR
step.json info: {"ops": {op: count}, "no_converter": [...], "nchw_inputs": [names of 4-D inputs laid out NCHW]}
"""

import os

import onnx
import onnx2tf

from model_info import arguments, count
from step_sdk import step_done


def main():
    args = arguments()
    model = onnx.load(args.input, load_external_data=False)
    folder = os.path.join(os.path.dirname(onnx2tf.__file__), "ops")
    known = {name[:-3] for name in os.listdir(folder) if name.endswith(".py") and not name.startswith("_")}
    ops = [n.op_type for n in model.graph.node if n.domain in ("", "ai.onnx")]
    custom = sorted({f"{n.domain}.{n.op_type}" for n in model.graph.node if n.domain not in ("", "ai.onnx")})
    initialized = {t.name for t in model.graph.initializer}
    nchw = []
    for value in model.graph.input:
        dims = [d.dim_value for d in value.type.tensor_type.shape.dim]
        if value.name not in initialized and len(dims) == 4 and dims[1] in (1, 3, 4) and dims[1] < min(dims[2:]):
            nchw.append(value.name)
    step_done(args.out, [], ops=count(ops), no_converter=sorted({op for op in ops if op not in known}) + custom,
              nchw_inputs=nchw)


if __name__ == "__main__":
    main()
