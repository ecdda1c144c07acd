"""Step 2 of `convert ssd --converter mlir`: the TF2 stack's v1 converter (MLIR) on tflite_graph.pb.

    ssd_mlir.py --input DIR/tflite_graph.pb --out OUT [--quantize none|uint8] [--mean_values 128]
                [--std_dev_values 127] [--default_ranges_min X --default_ranges_max Y]
Reads ssd.json beside the graph. Writes model.tflite.
"""

import argparse
import json
import os

from common import fail, reject, step_done


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--input", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--quantize", default="none")
    p.add_argument("--mean_values", type=float, default=128.0)
    p.add_argument("--std_dev_values", type=float, default=127.0)
    p.add_argument("--default_ranges_min", type=float)
    p.add_argument("--default_ranges_max", type=float)
    args = p.parse_args()
    with open(os.path.join(os.path.dirname(args.input), "ssd.json")) as fh:
        meta = json.load(fh)
    import tensorflow as tf

    conv = tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(
        args.input, [meta["input_array"]], meta["output_arrays"], input_shapes={meta["input_array"]: meta["input_shape"]})
    conv.allow_custom_ops = True
    conv.experimental_new_converter = True
    if args.quantize == "uint8":
        if not meta["quantization_aware"] and args.default_ranges_min is None:
            reject("the exported graph was trained without quantization, so it has no ranges for uint8; give "
                   "--default_ranges_min and --default_ranges_max, or retrain with quantization")
        conv.inference_type = tf.uint8
        conv.quantized_input_stats = {meta["input_array"]: (args.mean_values, args.std_dev_values)}
        if args.default_ranges_min is not None:
            conv.default_ranges_stats = (args.default_ranges_min, args.default_ranges_max)
    try:
        flatbuffer = conv.convert()
    except Exception as exc:
        lines = [ln for ln in str(exc).splitlines() if ln.strip()]
        detail = next((ln for ln in lines if "rror" in ln), lines[-1] if lines else type(exc).__name__)
        fail(f"the MLIR converter failed: {detail.strip()}")
    with open(os.path.join(args.out, "model.tflite"), "wb") as fh:
        fh.write(flatbuffer)
    info = {"converter": "mlir", "quantize": args.quantize, "size_bytes": len(flatbuffer),
            "input_array": meta["input_array"], "output_arrays": meta["output_arrays"]}
    if args.quantize == "uint8":
        info["input_quantization"] = {"scale": 1.0 / args.std_dev_values, "zero_point": int(args.mean_values),
                                      "dtype": "uint8"}
    step_done(args.out, ["model.tflite"], **info)


if __name__ == "__main__":
    main()
