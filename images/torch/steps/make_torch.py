"""Write a small random-weight PyTorch model in every form the pytorch route reads.

    make_torch.py --kind cnn|resnet|dense|inception|fire|shuffle --out DIR [--seed N]
DIR gets model.pt (TorchScript), model.pt2 (ExportedProgram), state_dict.pt + net.py (state_dict and its code),
module.pt (a whole pickled nn.Module, loadable only with its code), calibration.npy (NCHW samples) and step.json.
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


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--kind", default="cnn", choices=sorted(sample_nets.KINDS))
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--format", default="pytorch")
    args = p.parse_args()

    torch.manual_seed(args.seed)
    cls = sample_nets.KINDS[args.kind]
    model = cls(num_classes=10)
    with torch.no_grad():  # give batch-norm layers non-trivial statistics
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    model.eval()
    example = torch.rand(*INPUT_SHAPE)
    shutil.copyfile(sample_nets.__file__, os.path.join(args.out, "net.py"))
    torch.save(model.state_dict(), os.path.join(args.out, "state_dict.pt"))
    # a whole module pickled under the module name the code file has beside it (net.<Class>)
    sys.modules["net"] = sample_nets
    cls.__module__ = "net"
    torch.save(model, os.path.join(args.out, "module.pt"))
    torch.jit.save(torch.jit.trace(model, example), os.path.join(args.out, "model.pt"))
    torch.export.save(torch.export.export(model, (example,)), os.path.join(args.out, "model.pt2"))
    rng = np.random.default_rng(args.seed)
    np.save(os.path.join(args.out, "calibration.npy"), rng.uniform(-1, 1, (16,) + INPUT_SHAPE[1:]).astype("float32"))
    step_done(args.out, ["model.pt", "model.pt2", "state_dict.pt", "module.pt", "net.py", "calibration.npy"],
              kind=args.kind, model_code=f"net.py:{cls.__name__}", model_args='{"num_classes": 10}',
              input_shape=",".join(map(str, INPUT_SHAPE)))


if __name__ == "__main__":
    main()
