"""Run an ONNX model (onnxruntime) or an onnx2tf conversion (TFLite, SavedModel) for verification.

    run_model.py --format onnx|tflite|tf_saved_model --input MODEL --out DIR (--plan JSON | --inputs REF/inputs.json)
As the result it feeds the reference's inputs transposed to the converted model's layout (NCHW -> NHWC) and writes
its outputs (and logits) transposed back and named as the reference's, recording the layout in run.json.
See common.verification_run for what it writes.
"""

import os

import runtimes
from common import load_array_file, runner_arguments, verification_run


def main():
    args = runner_arguments(formats=sorted(runtimes.LOADERS))
    model = runtimes.load(args.format, args.input)
    info = {}
    if args.format == "tflite":
        scales = model.quant_scales()
        ref_out = os.path.join(os.path.dirname(args.inputs or ""), "outputs.npz")
        if scales and os.path.exists(ref_out):  # named as the reference's outputs, which the compare step pairs with
            names = runtimes.match(list(scales), list(load_array_file(ref_out))) or {}
            info["tensors"] = {"quant_scales": {ref: scales[got] for ref, got in names.items()}}
        info["transpose_ops"] = model.op_counts().get("TRANSPOSE", 0)
    verification_run(model, args, info)


if __name__ == "__main__":
    main()
