"""Run an ONNX model (onnxruntime) or an onnx2tf conversion (TFLite, SavedModel) for verification.

    run_model.py --format onnx|tflite|tf_saved_model --input MODEL --out DIR (--plan JSON | --inputs REF/inputs.json)
As the result it feeds the reference's inputs transposed to the converted model's layout (NCHW -> NHWC) and writes
its outputs (and logits) transposed back and named as the reference's, recording the layout in run.json
(images/shared/layout_bridge.py). See common.verification_run for what it writes.
"""

import runtimes
from common import runner_arguments, verification_run
from layout_bridge import tflite_run_info


def main():
    args = runner_arguments(formats=sorted(runtimes.LOADERS))
    model = runtimes.load(args.format, args.input)
    info = tflite_run_info(model, args.inputs) if args.format == "tflite" else {}
    verification_run(model, args, info)


if __name__ == "__main__":
    main()
