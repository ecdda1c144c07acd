"""Run a LiteRT Torch conversion (.tflite) for verification, in LiteRT's interpreter (ai-edge-litert).

    run_model.py --format tflite --input MODEL --out DIR (--plan JSON | --inputs REF/inputs.json)
As the result it feeds the reference's (torch's NCHW) inputs transposed to the converted model's shapes where
litert_convert.py made them channels-last, reads the outputs back into the reference's layout and names, and
records both in run.json: the onnx2tf stack's TFLite runner, shared (images/shared/layout_bridge.py). See
common.verification_run for what it writes.
"""

from common import runner_arguments, verification_run
from layout_bridge import ConvertedTFLite, tflite_run_info


def main():
    args = runner_arguments(formats=["tflite"])
    model = ConvertedTFLite(args.input)
    verification_run(model, args, tflite_run_info(model, args.inputs))


if __name__ == "__main__":
    main()
