"""Small random-weight models made inside a stack image, for trying routes, demos and tests."""

import json
import shutil
from pathlib import Path

from orchestrator import images
from orchestrator.errors import UsageError
from orchestrator.pipeline import _commit, _prepare_output
from orchestrator.runner import StepRun, execute

SAMPLES = {
    # format -> (stack, script)
    "keras": ("tf2", "make_model.py"),
    "keras_saved_model": ("tf2", "make_model.py"),
    "tf_saved_model": ("tf2", "make_model.py"),
    "tf_frozen_model": ("tf2", "make_model.py"),
}
KINDS = ("cnn", "mlp", "multi")


def make_sample(engine, fmt, output_dir, kind="cnn", seed=1, force=False, log=None):
    """Write a sample model of format `fmt` (and calibration data) into output_dir; return its step.json."""
    if fmt not in SAMPLES:
        raise UsageError(f"no sample for format '{fmt}'; samples: {', '.join(SAMPLES)}")
    if kind not in KINDS:
        raise UsageError(f"unknown sample kind '{kind}'; kinds: {', '.join(KINDS)}")
    stack_name, script = SAMPLES[fmt]
    tag, image_id = images.ensure_image(engine, images.get_stack(stack_name), log=log or (lambda _l: None))
    out, staging = _prepare_output(output_dir, force)
    try:
        run = StepRun("make_sample", stack_name, tag, image_id, script,
                      ["--kind", kind, "--format", fmt, "--seed", str(seed)], {}, staging / "model")
        meta, _ = execute(engine, run, log=log)
        (run.out_dir / "step.json").unlink()
        (run.out_dir / "sample.json").write_text(json.dumps(meta["info"], indent=2) + "\n")
        inner = run.out_dir
        tmp = staging.parent / (staging.name + "-x")
        inner.rename(tmp)
        shutil.rmtree(staging)
        _commit(tmp, out)
        return meta["info"]
    finally:
        for p in (staging, Path(str(staging) + "-x")):
            if p.exists():
                shutil.rmtree(p, ignore_errors=True)
