# -*- coding: utf-8 -*-
"""Step 1 of `convert ssd`: export_tflite_ssd_graph from a pipeline.config and a checkpoint.

    ssd_export.py --input MODEL_DIR --pipeline_config FILE --checkpoint PREFIX --out DIR
                  [--add_postprocessing_op true] [--max_detections 10] [--max_classes_per_detection 1]
                  [--use_regular_nms false] [--detections_per_class 100]
Writes tflite_graph.pb, tflite_graph.pbtxt and ssd.json (input shape, arrays) into DIR.
"""
from __future__ import print_function

import argparse
import os

from step_sdk import first_line, reject, step_done, boolean, write_json

INPUT_ARRAY = "normalized_input_image_tensor"
POSTPROCESS_OUTPUTS = ["TFLite_Detection_PostProcess", "TFLite_Detection_PostProcess:1",
                       "TFLite_Detection_PostProcess:2", "TFLite_Detection_PostProcess:3"]
RAW_OUTPUTS = ["raw_outputs/box_encodings", "raw_outputs/class_predictions"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--input", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--pipeline_config", required=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--add_postprocessing_op", default="true")
    p.add_argument("--max_detections", type=int, default=10)
    p.add_argument("--max_classes_per_detection", type=int, default=1)
    p.add_argument("--detections_per_class", type=int, default=100)
    p.add_argument("--use_regular_nms", default="false")
    args = p.parse_args()

    import tensorflow as tf
    from google.protobuf import text_format
    from object_detection import export_tflite_ssd_graph_lib
    from object_detection.protos import pipeline_pb2

    config = pipeline_pb2.TrainEvalPipelineConfig()
    try:
        with tf.gfile.GFile(args.pipeline_config, "r") as fh:
            text_format.Merge(fh.read(), config)
    except Exception as exc:
        reject("%s: not a valid pipeline.config (%s)" % (args.pipeline_config, first_line(exc)))
    if config.model.WhichOneof("model") != "ssd":
        reject("%s: is a %s model; only SSD models can be converted" % (args.pipeline_config,
                                                                      config.model.WhichOneof("model")))
    resizer = config.model.ssd.image_resizer
    if resizer.WhichOneof("image_resizer_oneof") != "fixed_shape_resizer":
        reject("%s: uses %s; TFLite needs a fixed_shape_resizer" % (args.pipeline_config,
                                                                   resizer.WhichOneof("image_resizer_oneof")))
    height, width = resizer.fixed_shape_resizer.height, resizer.fixed_shape_resizer.width
    reader = None
    try:
        reader = tf.train.NewCheckpointReader(args.checkpoint)
    except Exception as exc:
        reject("%s: not a readable checkpoint (%s)" % (args.checkpoint, first_line(exc)))
    add_op = boolean(args.add_postprocessing_op)
    try:
        export_tflite_ssd_graph_lib.export_tflite_graph(
            config, args.checkpoint, args.out, add_op, args.max_detections, args.max_classes_per_detection,
            detections_per_class=args.detections_per_class, use_regular_nms=boolean(args.use_regular_nms))
    except (tf.errors.NotFoundError, tf.errors.InvalidArgumentError) as exc:
        reject("%s: checkpoint does not fit %s (%s)" % (args.checkpoint, args.pipeline_config, first_line(exc)))
    quantized = config.HasField("graph_rewriter") and config.graph_rewriter.HasField("quantization")
    meta = {
        "height": height, "width": width, "num_classes": config.model.ssd.num_classes,
        "input_array": INPUT_ARRAY, "input_shape": [1, height, width, 3],
        "output_arrays": POSTPROCESS_OUTPUTS if add_op else RAW_OUTPUTS,
        "raw_outputs": RAW_OUTPUTS, "add_postprocessing_op": add_op, "max_detections": args.max_detections,
        "max_classes_per_detection": args.max_classes_per_detection,
        "use_regular_nms": boolean(args.use_regular_nms), "quantization_aware": quantized,
        "checkpoint_variables": len(reader.get_variable_to_shape_map()),
    }
    write_json(os.path.join(args.out, "ssd.json"), meta)
    step_done(args.out, ["tflite_graph.pb", "tflite_graph.pbtxt", "ssd.json"], **meta)


if __name__ == "__main__":
    main()
