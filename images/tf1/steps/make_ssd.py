# -*- coding: utf-8 -*-
"""Write a small SSD in the model-zoo layout, with random weights (for tests and demos; nothing downloaded).

    make_ssd.py --out DIR [--quantized] [--size 160] [--classes 3] [--depth 0.25] [--seed 1]
Writes DIR/ssd_model/{pipeline.config, model.ckpt.*} and DIR/ssd_model.tar.gz.
"""
from __future__ import print_function

import argparse
import os
import tarfile

from step_sdk import step_done

HYPERPARAMS = """
        activation: RELU_6
        regularizer { l2_regularizer { weight: 0.00004 } }
        initializer { truncated_normal_initializer { stddev: 0.03 mean: 0.0 } }
        batch_norm { train: true scale: true center: true decay: 0.9997 epsilon: 0.001 }"""


def pipeline_config(size, classes, depth, quantized):
    text = """model {
  ssd {
    num_classes: %(classes)d
    image_resizer { fixed_shape_resizer { height: %(size)d width: %(size)d } }
    feature_extractor {
      type: "ssd_mobilenet_v1"
      depth_multiplier: %(depth)s
      min_depth: 8
      conv_hyperparams {%(hp)s
      }
    }
    box_coder { faster_rcnn_box_coder { y_scale: 10.0 x_scale: 10.0 height_scale: 5.0 width_scale: 5.0 } }
    matcher { argmax_matcher { matched_threshold: 0.5 unmatched_threshold: 0.5 } }
    similarity_calculator { iou_similarity { } }
    anchor_generator {
      ssd_anchor_generator {
        num_layers: 6 min_scale: 0.2 max_scale: 0.95
        aspect_ratios: 1.0 aspect_ratios: 2.0 aspect_ratios: 0.5
      }
    }
    box_predictor {
      convolutional_box_predictor {
        kernel_size: 1 box_code_size: 4 use_dropout: false
        min_depth: 0 max_depth: 0 num_layers_before_predictor: 0
        conv_hyperparams {%(hp)s
        }
      }
    }
    loss {
      classification_loss { weighted_sigmoid { } }
      localization_loss { weighted_smooth_l1 { } }
      classification_weight: 1.0
      localization_weight: 1.0
    }
    post_processing {
      batch_non_max_suppression {
        score_threshold: 1e-8 iou_threshold: 0.6 max_detections_per_class: 10 max_total_detections: 10
      }
      score_converter: SIGMOID
    }
  }
}
train_config { batch_size: 1 }
""" % {"classes": classes, "size": size, "depth": depth, "hp": HYPERPARAMS}
    if quantized:
        text += "graph_rewriter { quantization { delay: 0 weight_bits: 8 activation_bits: 8 } }\n"
    return text


def randomize(sess, variables, seed):
    """Replace the initial values with ones that keep activations alive through the whole network
    (the pipeline's tiny initializers make every output nearly constant, which would verify nothing)."""
    import numpy as np
    rng = np.random.RandomState(seed)
    for var in variables:
        name, shape = var.op.name, var.shape.as_list()
        if "quant" in name.lower() or not shape and "global_step" in name:
            continue  # quantization ranges and the step counter keep their values
        if name.endswith("depthwise_weights"):
            value = rng.normal(0, np.sqrt(2.0 / (shape[0] * shape[1])), shape)
        elif name.endswith("weights") and len(shape) == 4:
            value = rng.normal(0, np.sqrt(2.0 / (shape[0] * shape[1] * shape[2])), shape)
        elif name.endswith("gamma") or name.endswith("moving_variance"):
            value = rng.uniform(0.8, 1.2, shape)
        elif name.endswith("beta") or name.endswith("biases") or name.endswith("moving_mean"):
            value = rng.uniform(-0.2, 0.2, shape)
        else:
            continue
        var.load(value.astype(var.dtype.base_dtype.as_numpy_dtype), sess)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--kind", default="float", choices=("float", "quant"))
    p.add_argument("--size", type=int, default=160)
    p.add_argument("--classes", type=int, default=3)
    p.add_argument("--depth", default="0.25")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()

    import tensorflow as tf
    from google.protobuf import text_format
    from object_detection.builders import graph_rewriter_builder, model_builder
    from object_detection.protos import pipeline_pb2

    folder = os.path.join(args.out, "ssd_model")
    os.makedirs(folder)
    quantized = args.kind == "quant"
    text = pipeline_config(args.size, args.classes, args.depth, quantized)
    with open(os.path.join(folder, "pipeline.config"), "w") as fh:
        fh.write(text)
    config = pipeline_pb2.TrainEvalPipelineConfig()
    text_format.Merge(text, config)
    with tf.Graph().as_default():
        tf.set_random_seed(args.seed)
        model = model_builder.build(config.model, is_training=False)
        image = tf.placeholder(tf.float32, [1, args.size, args.size, 3], name="normalized_input_image_tensor")
        model.predict(image, true_image_shapes=None)
        if quantized:
            graph_rewriter_builder.build(config.graph_rewriter, is_training=False)()
        tf.train.get_or_create_global_step()
        saver = tf.train.Saver()
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            randomize(sess, tf.global_variables(), args.seed)
            saver.save(sess, os.path.join(folder, "model.ckpt"))
    with tarfile.open(os.path.join(args.out, "ssd_model.tar.gz"), "w:gz") as tar:
        tar.add(folder, arcname="ssd_model")
    step_done(args.out, ["ssd_model", "ssd_model.tar.gz"], quantized=quantized, size=args.size,
              classes=args.classes)


if __name__ == "__main__":
    main()
