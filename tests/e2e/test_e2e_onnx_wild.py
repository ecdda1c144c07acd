"""ONNX as exporters other than torch.onnx write it, through the real CLI: each failure class of models from the wild
(made node by node in the onnx2tf stack by `orchestrator sample onnx --kind K`) reaches a verified .tflite that a
plain TFLite interpreter runs, by default or through the remedy the loop finds, and the manifest says which."""

import json

import pytest

from clihelp import cli, last_line, make_samples, manifest

pytestmark = pytest.mark.e2e

# kind -> the attempt that must verify (the default conversion, or the graph rewrite after the default failed)
CLASSES = {
    "hostile-names": "rewrite_graph",  # names TensorFlow rejects + Erf GELU (Paddle2ONNX's spelling)
    "tf2onnx": "rewrite_graph",  # ':0' / ';' names, NHWC input, LayerNorm over the last axis, Erf GELU
    "channel-layernorm": "rewrite_graph",  # ConvNeXt's LayerNorm2d over NCHW channels and LayerNormalization
    "resize": "rewrite_graph",  # Resize in every mode at 1.5x and downscaled
    "squeezenet": "default",  # the model zoo's SqueezeNet 1.1: ceil-mode pools, channel softmax after pooling
    "lrn": "default",  # Caffe-style LRN nodes, ceil-mode max and average pools
}


@pytest.fixture(scope="module")
def wild(stack_images, tmp_path_factory):
    return make_samples(tmp_path_factory.mktemp("wild-onnx"), "onnx", list(CLASSES))


@pytest.fixture(scope="module")
def converted(wild, tmp_path_factory):
    """{kind: (output folder, CompletedProcess)}: each sample converted once to TFLite with default settings."""
    root = tmp_path_factory.mktemp("wild-out")
    done = {}
    for kind in CLASSES:
        done[kind] = (root / kind, cli("convert", "onnx", wild[kind] / "model.onnx", root / kind, "--to", "tflite"))
    return done


@pytest.mark.parametrize("kind", list(CLASSES))
def test_model_from_the_wild_reaches_a_verified_plain_tflite(kind, wild, converted):
    out, proc = converted[kind]
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = manifest(out)
    sample = json.loads((wild[kind] / "sample.json").read_text())
    info = m["steps"][0]["info"]
    remedies = info["remedies"]
    assert remedies["used"] == CLASSES[kind]
    assert [t["passed"] for t in remedies["tried"]][-1] is True
    if CLASSES[kind] != "default":
        assert remedies["tried"][0]["remedy"] == "default" and not remedies["tried"][0]["passed"]
        assert remedies["tried"][-1]["rewrites"]
    # runs in a plain interpreter: builtin ops only
    assert info["op_set"]["flex"] == {} and info["op_set"]["custom"] == {}
    assert sum(info["op_set"]["builtin"].values()) == sum(info["ops"].values())
    # every output verified, under the user's own names
    v = m["verification"]
    assert v["passed"] is True
    assert [o["name"] for o in v["outputs"]] == sample["outputs"]
    assert all(o["passed"] and o["max_rel_err"] <= v["tolerance"] for o in v["outputs"])
    assert [i["name"] for i in info["tflite_inputs"]] == sample["inputs"]


def test_hostile_names_are_made_safe_and_spoken_back(converted):
    """Spaces, brackets, quotes, ':' and '@', non-ASCII, a 300-character name and names that clash once made
    safe: onnx2tf sees safe names, the .tflite signature and every record the user's."""
    out, _ = converted["hostile-names"]
    info = manifest(out)["steps"][0]["info"]
    assert info["safe_names"]["renamed"] >= 40
    assert info["tflite_inputs"][0]["name"] == "input image [N,3,H,W]"
    default, rewrite = info["remedies"]["tried"][:2]
    assert "(FlexErf)" in default["error"]
    erf = [r for r in rewrite["rewrites"] if r.startswith("erf_builtin")]
    assert len(erf) == 2 and all("'" in r and " node'" in r for r in erf)  # the user's node names


def test_every_resize_mode_is_exact_after_the_rewrite(converted):
    out, _ = converted["resize"]
    m = manifest(out)
    info = m["steps"][0]["info"]
    assert "(FlexResizeBicubic)" in info["remedies"]["tried"][0]["error"]
    rewrites = info["remedies"]["tried"][-1]["rewrites"]
    assert len([r for r in rewrites if r.startswith("resize_matrices")]) == 11
    assert {"nearest", "linear", "cubic"} <= {r.split("(")[1].split(",")[0] for r in rewrites}
    assert len(m["verification"]["outputs"]) == 11


def test_zoo_classifiers_keep_their_ops(converted):
    squeeze = manifest(converted["squeezenet"][0])
    assert squeeze["verification"]["outputs"][0]["shape"] == [1, 1000, 1, 1]
    assert {"MAX_POOL_2D", "SOFTMAX"} <= set(squeeze["steps"][0]["info"]["ops"])
    lrn = manifest(converted["lrn"][0])["steps"][0]["info"]["ops"]
    assert lrn.get("LOCAL_RESPONSE_NORMALIZATION") == 2 and lrn.get("AVERAGE_POOL_2D") == 1


def test_flex_ops_are_refused_unless_allowed(wild, tmp_path):
    """Without remedies the Erf GELU stays FlexErf: refused in one line naming the ops and the flag, nothing
    written; with --allow_flex_ops the same model is kept, its op set says Flex, and it verifies with the Flex
    delegate."""
    model = wild["hostile-names"] / "model.onnx"
    refused = cli("convert", "onnx", model, tmp_path / "refused", "--remedies", "off")
    assert refused.returncode == 3, refused.stderr[-2000:]
    line = last_line(refused)
    assert "FlexErf" in line and "--allow_flex_ops" in line and "Traceback" not in line
    assert not (tmp_path / "refused").exists()
    allowed = cli("convert", "onnx", model, tmp_path / "allowed", "--remedies", "off", "--allow_flex_ops")
    assert allowed.returncode == 0, allowed.stderr[-3000:]
    m = manifest(tmp_path / "allowed")
    assert m["steps"][0]["info"]["op_set"]["flex"] == {"FlexErf": 2}
    assert m["verification"]["passed"] is True


def test_an_onnx_model_with_external_data_converts_and_its_data_is_part_of_the_key(stack_images, tmp_path):
    """Large ONNX models keep their weights in files beside the .onnx: the folder is mounted (not the file alone),
    and the data file is hashed with the model."""
    import struct
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "robustness"))
    import protowrite

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(protowrite.onnx_model(
        external={"location": "weights.bin", "offset": "0", "length": "48"}))
    (folder / "weights.bin").write_bytes(struct.pack("<12f", *[0.25 * (i - 5) for i in range(12)]))
    out = tmp_path / "out"
    proc = cli("convert", "onnx", folder / "model.onnx", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = manifest(out)
    assert m["verification"]["passed"] is True
    assert set(m["input"]["sha256"]) == {"model.onnx", "weights.bin"}, m["input"]
