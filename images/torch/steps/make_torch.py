"""Write a small random-weight PyTorch model in every form the pytorch route reads, or as ONNX.

    make_torch.py --kind KIND --out DIR [--seed N] [--format pytorch|onnx]
pytorch: DIR gets model.pt (TorchScript), model.pt2 (ExportedProgram), state_dict.pt + net.py (state_dict and its
code), module.pt (a whole pickled nn.Module, loadable only with its code), calibration.npy (NCHW samples) and
step.json. onnx: model.onnx (torch.onnx's TorchScript exporter, opset 13) and calibration.npy.
"""

import argparse
import os
import shutil
import sys

import numpy as np
import torch

import sample_nets
from common import step_done

INPUT_SHAPE = (1, 3, 32, 32)
ONNX_OPSET = 13


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--kind", default="cnn", choices=sorted(sample_nets.KINDS))
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--format", default="pytorch", choices=("pytorch", "onnx"))
    args = p.parse_args()

    torch.manual_seed(args.seed)
    cls = sample_nets.KINDS[args.kind]
    classes = sample_nets.CLASSES.get(args.kind, 10)
    shape = sample_nets.INPUT_SHAPES.get(args.kind, INPUT_SHAPE)
    model = cls(num_classes=classes)
    with torch.no_grad():  # give batch-norm layers non-trivial statistics
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    if args.kind in sample_nets.DATA_INIT:  # batch-norm statistics of random images, or a deep net's outputs
        model.train()                      # fade into a constant and verification has nothing to judge
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = 1.0  # running stats := this batch's
        with torch.no_grad():
            model(torch.rand(16, *shape[1:]) * 2 - 1)
    model.eval()
    example = torch.rand(*shape)
    rng = np.random.default_rng(args.seed)
    np.save(os.path.join(args.out, "calibration.npy"), rng.uniform(-1, 1, (16,) + tuple(shape[1:])).astype("float32"))
    info = dict(kind=args.kind, input_shape=",".join(map(str, shape)))
    if args.format == "onnx":
        torch.onnx.export(model, (example,), os.path.join(args.out, "model.onnx"), input_names=["input"],
                          output_names=["output"], opset_version=ONNX_OPSET, dynamo=False)
        step_done(args.out, ["model.onnx", "calibration.npy"], **info)
        return
    shutil.copyfile(sample_nets.__file__, os.path.join(args.out, "net.py"))
    torch.save(model.state_dict(), os.path.join(args.out, "state_dict.pt"))
    # a whole module pickled under the module name the code file has beside it (net.<Class>)
    sys.modules["net"] = sample_nets
    cls.__module__ = "net"
    torch.save(model, os.path.join(args.out, "module.pt"))
    torch.jit.save(torch.jit.trace(model, example), os.path.join(args.out, "model.pt"))
    torch.export.save(torch.export.export(model, (example,)), os.path.join(args.out, "model.pt2"))
    step_done(args.out, ["model.pt", "model.pt2", "state_dict.pt", "module.pt", "net.py", "calibration.npy"],
              model_code=f"net.py:{cls.__name__}", model_args=f'{{"num_classes": {classes}}}', **info)


if __name__ == "__main__":
    main()
