"""Repeatability: the same conversion run twice gives byte-identical model files and the same verification inputs
(the seed fixes them), on the TFLite, TF.js and ONNX routes. The conversion cache is off in e2e tests, so both runs
convert for real."""

import hashlib
from pathlib import Path

import pytest

from clihelp import cli, manifest, make_samples

pytestmark = pytest.mark.e2e


def digests(out):
    """sha256 of every file of OUTPUT_DIR but the manifest and the report (which record times and paths)."""
    found = {}
    for path in sorted(Path(out).rglob("*")):
        if path.is_file() and path.name not in ("manifest.json", "report.html"):
            found[str(path.relative_to(out))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


@pytest.fixture(scope="module")
def onnx_sample(stack_images, tmp_path_factory):
    return make_samples(tmp_path_factory.mktemp("repeat-onnx"), "onnx", ("cnn",))["cnn"]


@pytest.mark.parametrize("route", ["keras-tflite", "keras-tfjs_layers_model", "onnx-tflite"])
def test_the_same_conversion_twice_gives_the_same_bytes(samples, onnx_sample, tmp_path, route):
    source, to = route.split("-", 1)
    model = samples[("keras", "cnn")] / "model.h5" if source == "keras" else onnx_sample / "model.onnx"
    runs = []
    for i in range(2):
        out = tmp_path / f"out{i}"
        proc = cli("convert", source, model, out, "--to", to)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs.append(digests(out))
    assert runs[0] == runs[1], {k: (runs[0].get(k), runs[1].get(k)) for k in set(runs[0]) | set(runs[1])
                                if runs[0].get(k) != runs[1].get(k)}
    assert any(k.startswith("verification/") and "inputs" in k for k in runs[0])  # the inputs are compared too
    m = manifest(tmp_path / "out0")
    assert m["verification"]["passed"] is True
