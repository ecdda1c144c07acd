"""Write a small random-weight Darknet model (.cfg + .weights) and matching calibration data, for tests and demos.

    make_darknet.py --kind yolov3-tiny|yolov4-tiny --out DIR [--seed N] [--size 96] [--classes 3]

Writes DIR/model.cfg (the layer structure of the public yolov3-tiny / yolov4-tiny cfgs, with width = height =
--size and --classes classes), DIR/model.weights (seeded random values in the Darknet layout, sized from the
cfg by darknet_to_keras's own parser) and DIR/calibration.npy (8 NHWC samples in 0..1); nothing is downloaded.
"""

import argparse
import os
import struct

import numpy as np

from common import reject, step_done
from darknet_to_keras import plan, read_cfg

ANCHORS = "10,14,  23,27,  37,58,  81,82,  135,169,  344,319"


def conv(filters, size, stride=1, bn=True, activation="leaky"):
    lines = ["[convolutional]"] + (["batch_normalize=1"] if bn else [])
    return "\n".join(lines + [f"filters={filters}", f"size={size}", f"stride={stride}", "pad=1",
                              f"activation={activation}"])


def yolo(mask, classes, extra=()):
    return "\n".join(["[yolo]", f"mask = {mask}", f"anchors = {ANCHORS}", f"classes={classes}", "num=6",
                      *extra])


def route(layers, groups=None):
    return "\n".join(["[route]", f"layers = {layers}"] + ([f"groups={groups}", "group_id=1"] if groups else []))


def maxpool(size=2, stride=2):
    return f"[maxpool]\nsize={size}\nstride={stride}"


def net(size):
    return "\n".join(["[net]", "# testing", "batch=1", "subdivisions=1", f"width={size}", f"height={size}",
                      "channels=3", "momentum=0.9", "decay=0.0005"])


def yolov3_tiny(size, classes):
    head = 3 * (classes + 5)
    body = [conv(16, 3), maxpool()]
    for filters in (32, 64, 128, 256):  # layers 2..9; layer 8 feeds the second head
        body += [conv(filters, 3), maxpool()]
    body += [conv(512, 3), maxpool(2, 1), conv(1024, 3),
             "###########", conv(256, 1), conv(512, 3), conv(head, 1, bn=False, activation="linear"),
             yolo("3,4,5", classes),
             route("-4"), conv(128, 1), "[upsample]\nstride=2", route("-1, 8"),
             conv(256, 3), conv(head, 1, bn=False, activation="linear"),
             yolo("1,2,3", classes)]  # sic: the public yolov3-tiny.cfg masks its second head 1,2,3
    return [net(size)] + body


def yolov4_tiny(size, classes):
    head = 3 * (classes + 5)
    extra = ("scale_x_y = 1.05", "iou_thresh=0.213", "nms_kind=greedynms")
    body = [conv(32, 3, 2), conv(64, 3, 2)]
    for filters in (64, 128, 256):  # three CSP blocks; the 1x1 conv of the last (layer 23) feeds the second head
        body += [conv(filters, 3), route("-1", groups=2), conv(filters // 2, 3), conv(filters // 2, 3),
                 route("-1,-2"), conv(filters, 1), route("-6,-1"), maxpool()]
    body += [conv(512, 3),
             "##################################", conv(256, 1), conv(512, 3),
             conv(head, 1, bn=False, activation="linear"), yolo("3,4,5", classes, extra),
             route("-4"), conv(128, 1), "[upsample]\nstride=2", route("-1, 23"),
             conv(256, 3), conv(head, 1, bn=False, activation="linear"), yolo("1,2,3", classes, extra)]
    return [net(size)] + body


KINDS = {"yolov3-tiny": yolov3_tiny, "yolov4-tiny": yolov4_tiny}


def random_weights(layers, rng):
    """Darknet-ordered float32 values: BN variances in 0.5..1.5, He-scaled kernels so activations stay O(1)."""
    chunks = []
    for layer in layers:
        if layer.kind != "convolutional":
            continue
        p = layer.params
        n, k, fan_in = p["filters"], p["size"], p["in_channels"] // p["groups"] * p["size"] ** 2
        if p["bn"]:
            chunks += [rng.uniform(-0.1, 0.1, n),  # bias (beta)
                       rng.uniform(0.5, 1.5, n),  # scale (gamma)
                       rng.uniform(-0.1, 0.1, n),  # rolling mean
                       rng.uniform(0.5, 1.5, n)]  # rolling variance
        else:
            chunks.append(rng.uniform(-0.1, 0.1, n))
        gain = 1.0 if p["activation"] == "linear" else 2.0
        chunks.append(rng.normal(0.0, np.sqrt(gain / fan_in), n * (p["in_channels"] // p["groups"]) * k * k))
    return np.concatenate(chunks).astype("<f4")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--kind", default="yolov3-tiny", choices=sorted(KINDS))
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--size", type=int, default=96, help="input width = height, a multiple of 32")
    p.add_argument("--classes", type=int, default=3)
    args = p.parse_args()
    if args.size < 32 or args.size % 32:
        reject(f"--size {args.size} must be a positive multiple of 32")
    if args.classes < 1:
        reject(f"--classes {args.classes} must be at least 1")
    cfg = os.path.join(args.out, "model.cfg")
    with open(cfg, "w") as fh:
        fh.write("\n\n".join(KINDS[args.kind](args.size, args.classes)) + "\n")
    shape, layers = plan(read_cfg(cfg))
    need = sum(layer.floats for layer in layers)
    rng = np.random.default_rng(args.seed)
    values = random_weights(layers, rng)
    assert values.size == need, (values.size, need)
    with open(os.path.join(args.out, "model.weights"), "wb") as fh:
        fh.write(struct.pack("<3iq", 0, 2, 5, 0))  # major 0, minor 2, revision 5, seen (int64 from 0.2 on)
        fh.write(values.tobytes())
    calib = np.random.default_rng(args.seed + 100).uniform(0, 1, (8, *shape)).astype("float32")
    np.save(os.path.join(args.out, "calibration.npy"), calib)
    step_done(args.out, ["model.cfg", "model.weights", "calibration.npy"], kind=args.kind,
              input_shape=",".join(str(d) for d in (1, *shape)), weights_floats=need, classes=args.classes,
              outputs=[f"yolo_{layer.index}" for layer in layers if layer.kind == "yolo"])


if __name__ == "__main__":
    main()
