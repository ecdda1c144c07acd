"""Step 2 of `convert ssd --converter mlir`: the TF2 stack's v1 converter (MLIR) on tflite_graph.pb.

    ssd_mlir.py --input DIR/tflite_graph.pb --out OUT [--quantize none|uint8] [--mean_values 128]
                [--std_dev_values 127] [--default_ranges_min X --default_ranges_max Y]
Reads ssd.json beside the graph. Writes model.tflite.
"""

import os

import ssd_convert
from common import fail, step_done


def main():
    args = ssd_convert.arguments()
    meta = ssd_convert.graph_facts(args)
    import tensorflow as tf

    conv = tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(
        args.input, [meta["input_array"]], meta["output_arrays"], input_shapes={meta["input_array"]: meta["input_shape"]})
    conv.experimental_new_converter = True
    ssd_convert.configure(conv, tf.uint8, args, meta)
    try:
        flatbuffer = conv.convert()
    except Exception as exc:
        fail(f"the MLIR converter failed: {ssd_convert.converter_error(args, exc)}")
    with open(os.path.join(args.out, "model.tflite"), "wb") as fh:
        fh.write(flatbuffer)
    step_done(args.out, ["model.tflite"], **ssd_convert.info(args, meta, "mlir", len(flatbuffer)))


if __name__ == "__main__":
    main()
