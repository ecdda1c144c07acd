"""Small random-weight models made inside a stack image, for trying routes, demos and tests."""

import json
from dataclasses import dataclass

from orchestrator import images
from orchestrator.errors import UsageError
from orchestrator.runner import StepRun, execute
from orchestrator.staging import Staging


@dataclass(frozen=True)
class Sample:
    stack: str
    script: str  # called with --kind KIND --seed N --out DIR (and --format FORMAT when `by_format`)
    kinds: tuple  # the first kind is the default
    by_format: bool = False  # one script writes several formats
    elsewhere: tuple = ()  # (kind, Sample): kinds another stack's script makes

    def of(self, kind):
        """The Sample that makes `kind`."""
        return dict(self.elsewhere).get(kind, self)

    def all_kinds(self):
        return self.kinds + tuple(k for k, _ in self.elsewhere)


KERAS_KINDS = ("cnn", "saturated", "saturated-scaled", "mlp", "multi", "head", "lstm", "tfjs-ops", "mobilenetv2",
               "flex")
# "saturated": logits in the hundreds, so the softmax is one-hot on any input; "saturated-scaled": the same, its
# softmax followed by a rescaling (nothing marks where its logits are); "tfjs-ops": every fused form the TF.js
# converter writes (images/tf2/steps/tfjs_emitted_ops.json), batch fixed to 1, an int32 input; "flex": a
# MatrixInverse, a TF op with no TFLite builtin (converts with --allow_flex_ops)
TORCH_KINDS = ("cnn", "saturated", "resnet", "dense", "inception", "fire", "shuffle", "inception-v1", "gelu",
               "mobilenetv2")
# the Keras files people save today, made in the keras3 stack: "keras3" (model.keras, model.h5 and sequential.keras
# by Keras 3.15), "tf-keras" (model.h5, keras_saved_model/ and saved_model/ by tf_keras / TF 2.21), "keras3-gaps"
# (layers a TF.js layers model cannot hold)
NEW_KERAS = Sample("keras3", "make_keras.py", ("keras3", "tf-keras", "keras3-gaps"))
# ... and "keras3-torch" / "keras3-jax": the same CNN saved by Keras 3 with the PyTorch / JAX backend, in the torch /
# litert_torch stack (each has Keras, that backend and no TensorFlow)
TORCH_KERAS = Sample("torch", "make_keras.py", ("keras3-torch",))
JAX_KERAS = Sample("litert_torch", "make_keras.py", ("keras3-jax",))
# ONNX as other exporters write it (Paddle2ONNX's and tf2onnx's names, names TensorFlow rejects, Erf GELU, channel
# LayerNorm, Resize in every mode, the model zoo's opset-10 SqueezeNet 1.1 and Caffe-style LRN), built node by node in
# the onnx2tf stack
WILD_ONNX = Sample("onnx2tf", "make_onnx.py", ("paddle", "hostile-names", "tf2onnx", "channel-layernorm", "resize",
                                              "squeezenet", "lrn"))
SAMPLES = {
    "keras": Sample("tf2", "make_model.py", KERAS_KINDS, by_format=True,
                    elsewhere=(("keras3", NEW_KERAS), ("tf-keras", NEW_KERAS), ("keras3-gaps", NEW_KERAS),
                               ("keras3-torch", TORCH_KERAS), ("keras3-jax", JAX_KERAS))),
    "keras_saved_model": Sample("tf2", "make_model.py", KERAS_KINDS, by_format=True),
    "tf_saved_model": Sample("tf2", "make_model.py", KERAS_KINDS, by_format=True),
    "tf_frozen_model": Sample("tf2", "make_model.py", KERAS_KINDS, by_format=True),
    # a model-zoo style SSD folder and its .tar.gz; "quant" adds the quantization graph_rewriter
    "ssd": Sample("tf1", "make_ssd.py", ("float", "quant")),
    # TorchScript, ExportedProgram, state_dict + net.py, pickled module, calibration.npy; CNN architectures that
    # stress NCHW -> NHWC conversion (densely connected, inception, fire modules, channel shuffle)
    "pytorch": Sample("torch", "make_torch.py", TORCH_KINDS, by_format=True),
    # the same networks exported to ONNX by torch.onnx (model.onnx + calibration.npy); inception-v1: GoogLeNet's
    # stem and modules (LRN, ceil-mode max-pools, four-branch concats, softmax over 1000 classes)
    "onnx": Sample("torch", "make_torch.py", ("inception-v1",) + TORCH_KINDS, by_format=True,
                   elsewhere=tuple((kind, WILD_ONNX) for kind in WILD_ONNX.kinds)),
    # model.cfg + model.weights (random) shaped like the tiny YOLOs, 96x96 input, 3 classes; calibration.npy
    "darknet": Sample("tf2", "make_darknet.py", ("yolov3-tiny", "yolov4-tiny")),
    # module.py (build(params=None) -> (apply_fn, params)) and params.msgpack: a Flax Dense layer or a small CNN
    "jax": Sample("tf2", "make_jax.py", ("dense", "cnn")),
}


def make_sample(engine, fmt, output_dir, kind=None, seed=1, force=False, build_missing=True, log=None):
    """Write a sample model of format `fmt` (and calibration data) into output_dir; return its step.json info.
    With build_missing=False a missing stack image is refused (EnvironmentProblem) before anything is written."""
    if fmt not in SAMPLES:
        raise UsageError(f"no sample for format '{fmt}'; samples: {', '.join(SAMPLES)}")
    kind = kind or SAMPLES[fmt].kinds[0]
    if kind not in SAMPLES[fmt].all_kinds():
        raise UsageError(f"unknown {fmt} sample kind '{kind}'; kinds: {', '.join(SAMPLES[fmt].all_kinds())}")
    sample = SAMPLES[fmt].of(kind)
    ready = images.ready(engine, [sample.stack], build_missing=build_missing, log=log)
    args = ["--kind", kind, "--seed", str(seed)] + (["--format", fmt] if sample.by_format else [])
    with Staging(output_dir, force) as stage:
        stage.path.rmdir()  # the step makes its own fresh output folder
        run = StepRun("make_sample", ready[sample.stack], sample.script, args, {}, stage.path)
        meta, _ = execute(engine, run, log=log)
        (stage.path / "step.json").unlink()
        meta["info"].setdefault("kind", kind)
        (stage.path / "sample.json").write_text(json.dumps(meta["info"], indent=2) + "\n")
        stage.commit()
        return meta["info"]
