"""Verification that cannot be fooled, through the real CLI on real images.

- Models whose softmax saturates on every input (logits in the hundreds) are judged on their logits, for keras,
  TF.js, PyTorch (TorchScript) and ONNX sources.
- A saturated model whose logits cannot be found is inconclusive: exit 4, one line, nothing written.
- Deliberately broken conversions (tamper_tflite.py changes the converted .tflite) are all caught by
  `orchestrator verify`, on saturating models.
- The Inception-v1-style ONNX class (LRN, ceil-mode max-pools, concats, softmax over 1000 classes) converts and
  agrees with onnxruntime on normal(0, 1) inputs, not only on the saturating uniform ones."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from clihelp import cli, cli_env, last_line, manifest

pytestmark = pytest.mark.e2e

HERE = Path(__file__).resolve().parent
TORCH_SHAPE = "1,3,32,32"
KERAS_TAMPERS = ("conv_weight", "swap_channels", "zero_bias", "input_layout", "float16")


def tamper(engine, src, out_dir, kind):
    """Run tamper_tflite.py inside the tf2 image: a broken copy of src in out_dir/model.tflite."""
    from orchestrator import images
    from orchestrator.engine import ContainerSpec, Mount

    out_dir.mkdir(parents=True)
    spec = ContainerSpec(image=images.get_stack("tf2").tag(),
                         command=["python", "/t/tamper_tflite.py", "/in/model.tflite", "/out/model.tflite",
                                  "--kind", kind],
                         mounts=[Mount(str(src), "/in/model.tflite", True), Mount(str(HERE), "/t", True),
                                 Mount(str(out_dir), "/out", False)],
                         environment={"HOME": "/tmp"}, user=f"{os.getuid()}:{os.getgid()}", name_hint="tamper")
    result = engine.run(spec)
    assert result.exit_code == 0, result.stderr[-2000:]
    return out_dir / "model.tflite"


def judged_on_logits(m, source_op, result_op):
    """Every random distribution saturated; each judged on the logits, which are kept and recomputable."""
    v = m["verification"]
    assert v["passed"] is True and v["conclusive"] is True
    out = v["outputs"][0]
    for name in ("uniform", "normal", "image"):
        stats = out["by_distribution"][name]
        assert stats["saturated"] == 1.0 and stats["basis"] == "logits", (name, stats)
        assert stats["logits"]["passed"] and stats["logits"]["max_rel_err"] <= out["logits_tolerance"]
    assert out["basis"] == "logits" and v["basis"] == "logits"
    assert v["logits_ops"]["source"][out["name"]] == source_op
    assert v["logits_ops"]["result"][out["result_name"]] == result_op
    return out


def recompute_logit_error(out_dir, out):
    ref = np.load(out_dir / "verification" / "source_logits.npz")[out["name"]].astype(np.float64)
    got = np.load(out_dir / "verification" / "result_logits.npz")[out["result_name"]].astype(np.float64)
    rows = slice(0, 8)  # the first group: uniform (no user data given)
    worst = np.max(np.abs(ref[rows] - got[rows]))
    assert worst == pytest.approx(out["by_distribution"]["uniform"]["logits"]["max_abs_err"], rel=1e-6, abs=1e-12)


@pytest.fixture(scope="module")
def saturated(stack_images, tmp_path_factory):
    """A saturated Keras CNN, its verified .tflite, and its TF.js layers model."""
    root = tmp_path_factory.mktemp("saturated")
    proc = cli("sample", "keras", root / "keras", "--kind", "saturated")
    assert proc.returncode == 0, proc.stderr[-2000:]
    made = {"keras": root / "keras" / "model.h5"}
    for to in ("tflite", "tfjs_layers_model"):
        out = root / to
        proc = cli("convert", "keras", made["keras"], out, "--to", to)
        assert proc.returncode == 0, proc.stderr[-3000:]
        made[to] = out
        made[to + "_stdout"] = proc.stdout
    return made


def test_saturated_keras_to_tflite_is_judged_on_logits(saturated):
    m = manifest(saturated["tflite"])
    out = judged_on_logits(m, "Softmax", "SOFTMAX")
    recompute_logit_error(saturated["tflite"], out)
    v = m["verification"]
    assert v["perturbation"] == "the Keras model in float64"
    assert out["noise_floor"] is not None and out["tolerance"] >= 1e-4 and out["tolerance_source"]
    assert "judged on logits" in saturated["tflite_stdout"] and "24 inputs" in saturated["tflite_stdout"]
    kept = sorted(p.name for p in (saturated["tflite"] / "verification").iterdir())
    assert kept == ["inputs.npz", "result_logits.npz", "result_outputs.npz", "source_logits.npz",
                    "source_outputs.npz", "source_perturbed.npz", "source_perturbed_logits.npz"]


def test_saturated_keras_to_tfjs_and_tfjs_source_are_judged_on_logits(saturated, tmp_path):
    judged_on_logits(manifest(saturated["tfjs_layers_model"]), "Softmax", "softmax")
    out = tmp_path / "out"
    proc = cli("convert", "tfjs_layers_model", saturated["tfjs_layers_model"] / "model.json", out, "--to", "tflite")
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = manifest(out)
    judged_on_logits(m, "softmax", "SOFTMAX")
    assert m["verification"]["perturbation"] == "inputs moved by one float32 rounding step"


def test_saturated_torchscript_and_onnx_are_judged_on_logits(stack_images, tmp_path):
    proc = cli("sample", "pytorch", tmp_path / "pt", "--kind", "saturated")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "out"
    proc = cli("convert", "pytorch", tmp_path / "pt" / "model.pt", out, "--input-shape", TORCH_SHAPE)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = manifest(out)
    judged_on_logits(m, "softmax", "SOFTMAX")
    assert m["verification"]["perturbation"] == "the PyTorch model in float64"
    # the ONNX it exported, converted again on its own: onnxruntime is the reference, and onnx2tf's remedy check
    # judged the attempt on the logits too
    out2 = tmp_path / "out2"
    proc = cli("convert", "onnx", out / "model.onnx", out2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m2 = manifest(out2)
    judged_on_logits(m2, "Softmax", "SOFTMAX")
    assert m2["verification"]["perturbation"] == "onnxruntime graph optimizations off"
    used = m2["steps"][0]["info"]["remedies"]
    assert used["tried"][0]["basis"] == "logits" and used["tried"][0]["passed"] is True


def test_saturated_model_without_findable_logits_is_inconclusive(stack_images, tmp_path):
    proc = cli("sample", "keras", tmp_path / "k", "--kind", "saturated-scaled")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "out"
    proc = cli("convert", "keras", tmp_path / "k" / "model.h5", out)
    assert proc.returncode == 4, proc.stderr[-2000:]
    line = last_line(proc)
    assert line.startswith("orchestrator: error: verification failed: inconclusive") and "--sample_input" in line
    assert "Traceback" not in proc.stderr
    assert not out.exists() and not any(p.name.startswith(".out") for p in tmp_path.iterdir())


def test_tampered_conversions_are_all_caught(engine, saturated, tmp_path):
    """Each way of breaking the converted model fails `orchestrator verify` with exit 4 and one line. The source
    model's run is the same every time: a cache of this test's own keeps it from the first verify (the cache's
    keys are tested in test_e2e_cache.py); each tampered result runs for real."""
    model = saturated["keras"]
    good = saturated["tflite"] / "model.tflite"
    env = cli_env(ORCHESTRATOR_NO_CACHE="", ORCHESTRATOR_CACHE_DIR=str(tmp_path / "cache"))
    proc = cli("verify", "keras", model, good, env=env)
    assert proc.returncode == 0 and "verified on 24 inputs" in proc.stdout, proc.stderr[-2000:]
    caught = {}
    for kind in KERAS_TAMPERS:
        bad = tamper(engine, good, tmp_path / kind, kind)
        proc = cli("verify", "keras", model, bad, env=env)
        caught[kind] = proc.returncode == 4 and last_line(proc).startswith("orchestrator: error: verification failed")
        assert "Traceback" not in proc.stderr
    assert caught == {kind: True for kind in KERAS_TAMPERS}


@pytest.fixture(scope="module")
def inception(stack_images, tmp_path_factory):
    root = tmp_path_factory.mktemp("inception")
    proc = cli("sample", "onnx", root / "sample", "--kind", "inception-v1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = root / "out"
    proc = cli("convert", "onnx", root / "sample" / "model.onnx", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "sample" / "model.onnx", out


def test_inception_v1_onnx_agrees_on_normal_inputs(inception):
    _model, out = inception
    v = manifest(out)["verification"]
    assert v["passed"] is True
    normal = v["outputs"][0]["by_distribution"]["normal"]
    assert normal["passed"] is True and normal["top1_agreement"] == 1.0
    # judged where the outputs say something: on the outputs where they are not saturated, else the logits
    assert normal["basis"] in ("outputs", "logits")
    if normal["basis"] == "outputs":
        assert normal["max_rel_err"] <= v["outputs"][0]["tolerance"]
    else:
        assert normal["logits"]["max_rel_err"] <= v["outputs"][0]["logits_tolerance"]


def test_inception_v1_with_its_lrn_dropped_is_caught(engine, inception, tmp_path):
    model, out = inception
    bad = tamper(engine, out / "model.tflite", tmp_path / "drop_lrn", "drop_lrn")
    proc = cli("verify", "onnx", model, bad)
    assert proc.returncode == 4, proc.stderr[-2000:]
    assert last_line(proc).startswith("orchestrator: error: verification failed")
    proc = cli("verify", "onnx", model, out / "model.tflite", "--keep", tmp_path / "kept")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "kept" / "inputs.npz").is_file()
    shutil.rmtree(tmp_path / "kept")


def test_the_unit_tests_fake_compare_and_runner_write_what_the_real_ones_do(saturated):
    """Contract: every key the unit tests' FakeEngine writes for compare.py and the runners exists in a real run."""
    import sys

    sys.path.insert(0, str(HERE.parent / "unit"))
    import fakes

    real = manifest(saturated["tflite"])["verification"]
    fake = fakes.verification_record(True, 0.0)
    assert set(fake) - {"tolerance"} <= set(real) and "tolerance" in real
    real_out, fake_out = real["outputs"][0], fake["outputs"][0]
    assert set(fake_out) - {"by_distribution"} <= set(real_out)
    assert set(fake_out["by_distribution"]["uniform"]) <= set(real_out["by_distribution"]["uniform"])
    # the reference runner's groups (what the fake writes into run.json) reach the manifest as the distributions
    assert {"name", "kind", "start", "count", "judged"} <= set(real["inputs"]["distributions"][0])
    assert real["perturbation"] and real["inputs"]["samples"] == 24
