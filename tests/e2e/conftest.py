"""End-to-end tests: the real CLI, a real Docker engine, real stack images and converters.

Under CI=true a missing engine is a failure, never a skip. Every test's conversions run for real: the conversion
cache is off here (ORCHESTRATOR_NO_CACHE), except in test_e2e_cache.py, which turns it on with a folder of its own.
report.html is off too (ORCHESTRATOR_NO_REPORT), except where a test checks it (clihelp.REPORT_ON): the report's
runs are checked on every stack that makes one in test_e2e_report.py, not repeated by every conversion."""

import os

import pytest

os.environ["ORCHESTRATOR_NO_CACHE"] = "1"
os.environ["ORCHESTRATOR_NO_REPORT"] = "1"  # on where a test checks the report (REPORT_ON)

from clihelp import cli, engine_or_skip, make_samples, use_sample_cache


@pytest.fixture(scope="session", autouse=True)
def sample_cache(tmp_path_factory):
    """Samples are made once per run and shared by the xdist workers (clihelp.cached_sample); tests get copies."""
    return use_sample_cache(tmp_path_factory)


@pytest.fixture(scope="session")
def engine():
    return engine_or_skip()


@pytest.fixture(scope="session")
def stack_images(engine):
    """Build (or find up to date) every stack image through the CLI."""
    proc = cli("images", "build", timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="session")
def samples(stack_images, tmp_path_factory):
    root = tmp_path_factory.mktemp("samples")
    made = {}
    for fmt, kind in [("keras", "cnn"), ("keras", "multi"), ("keras_saved_model", "cnn"),
                      ("tf_saved_model", "multi"), ("tf_frozen_model", "multi")]:
        made[(fmt, kind)] = make_samples(root / fmt, fmt, [kind])[kind]
    return made


# a model whose step and verification each take seconds, even in a warm worker: timeouts and signals land inside a
# phase (test_e2e_runner.py, test_e2e_faults.py)
@pytest.fixture(scope="session")
def keras_mobilenet(stack_images, tmp_path_factory):
    return make_samples(tmp_path_factory.mktemp("mobilenet"), "keras", ["mobilenetv2"])["mobilenetv2"] / "model.h5"


# a trained head merged under a base network (the gesture-classifier case): test_e2e_tfjs.py, test_e2e_keras3.py
@pytest.fixture(scope="session")
def head_and_base(stack_images, tmp_path_factory):
    root = tmp_path_factory.mktemp("merge")
    make_samples(root, "keras", ("cnn", "head"))
    proc = cli("convert", "keras", root / "head" / "model.h5", root / "head_tfjs", "--to", "tfjs_layers_model")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return root / "cnn" / "model.h5", root / "head_tfjs" / "model.json"


# PyTorch samples (TorchScript, .pt2, state_dict + net.py, pickled module): test_e2e_torch.py, test_e2e_litert.py
@pytest.fixture(scope="session")
def torch_samples(stack_images, tmp_path_factory):
    return make_samples(tmp_path_factory.mktemp("torch-samples"), "pytorch", ("cnn", "resnet"))
