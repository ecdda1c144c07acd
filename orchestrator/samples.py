"""Small random-weight models made inside a stack image, for trying routes, demos and tests."""

import json
import shutil

from orchestrator import images
from orchestrator.errors import UsageError
from orchestrator.pipeline import _commit, _prepare_output
from orchestrator.runner import StepRun, execute

KERAS_KINDS = ("cnn", "saturated", "saturated-scaled", "mlp", "multi", "head", "lstm")
# "saturated": logits in the hundreds, so the softmax is one-hot on any input; "saturated-scaled": the same, its
# softmax followed by a rescaling (nothing marks where its logits are)
TORCH_KINDS = ("cnn", "saturated", "resnet", "dense", "inception", "fire", "shuffle", "inception-v1")
SAMPLES = {
    # format -> (stack, script, kinds); the first kind is the default
    "keras": ("tf2", "make_model.py", KERAS_KINDS),
    "keras_saved_model": ("tf2", "make_model.py", KERAS_KINDS),
    "tf_saved_model": ("tf2", "make_model.py", KERAS_KINDS),
    "tf_frozen_model": ("tf2", "make_model.py", KERAS_KINDS),
    # a model-zoo style SSD folder and its .tar.gz; "quant" adds the quantization graph_rewriter
    "ssd": ("tf1", "make_ssd.py", ("float", "quant")),
    # TorchScript, ExportedProgram, state_dict + net.py, pickled module, calibration.npy; CNN architectures that
    # stress NCHW -> NHWC conversion (densely connected, inception, fire modules, channel shuffle)
    "pytorch": ("torch", "make_torch.py", TORCH_KINDS),
    # the same networks exported to ONNX by torch.onnx (model.onnx + calibration.npy); inception-v1: GoogLeNet's
    # stem and modules (LRN, ceil-mode max-pools, four-branch concats, softmax over 1000 classes)
    "onnx": ("torch", "make_torch.py", ("inception-v1",) + TORCH_KINDS),
    # model.cfg + model.weights (random) shaped like the tiny YOLOs, 96x96 input, 3 classes; calibration.npy
    "darknet": ("tf2", "make_darknet.py", ("yolov3-tiny", "yolov4-tiny")),
    # module.py (build(params=None) -> (apply_fn, params)) and params.msgpack: a Flax Dense layer or a small CNN
    "jax": ("tf2", "make_jax.py", ("dense", "cnn")),
}


def _args(fmt, kind, seed):
    if fmt == "ssd":
        return ["--seed", str(seed)] + (["--quantized"] if kind == "quant" else [])
    if fmt in ("pytorch", "darknet", "jax"):
        return ["--kind", kind, "--seed", str(seed)]
    if fmt == "onnx":
        return ["--kind", kind, "--seed", str(seed), "--format", "onnx"]
    return ["--kind", kind, "--format", fmt, "--seed", str(seed)]


def make_sample(engine, fmt, output_dir, kind=None, seed=1, force=False, log=None):
    """Write a sample model of format `fmt` (and calibration data) into output_dir; return its step.json."""
    if fmt not in SAMPLES:
        raise UsageError(f"no sample for format '{fmt}'; samples: {', '.join(SAMPLES)}")
    stack_name, script, kinds = SAMPLES[fmt]
    kind = kind or kinds[0]
    if kind not in kinds:
        raise UsageError(f"unknown {fmt} sample kind '{kind}'; kinds: {', '.join(kinds)}")
    tag, image_id = images.ensure_image(engine, images.get_stack(stack_name), log=log or (lambda _l: None))
    out, staging = _prepare_output(output_dir, force)
    staging.rmdir()  # the step makes its own fresh output folder
    try:
        run = StepRun("make_sample", stack_name, tag, image_id, script, _args(fmt, kind, seed), {}, staging)
        meta, _ = execute(engine, run, log=log)
        (staging / "step.json").unlink()
        meta["info"].setdefault("kind", kind)
        (staging / "sample.json").write_text(json.dumps(meta["info"], indent=2) + "\n")
        _commit(staging, out)
        return meta["info"]
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
