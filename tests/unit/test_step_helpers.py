"""Host-side unit tests of the step scripts' pure parts (numpy only, no ML framework): the Darknet cfg parser and
weight loader, the compare step's output pairing, onnx2tf's layout adapters, and the step SDK."""

import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

IMAGES = Path(__file__).resolve().parents[2] / "images"
for folder in ("shared", "tf2/steps", "onnx2tf/steps"):
    sys.path.insert(0, str(IMAGES / folder))

import darknet_to_keras as darknet  # noqa: E402
import parity  # noqa: E402
import runtimes  # noqa: E402
import step_sdk  # noqa: E402
from common import Spec  # noqa: E402

CFG = """[net]
# a tiny YOLO-like net
width=8
height=8
channels=3

[convolutional]
batch_normalize=1
filters=4
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

[convolutional]
filters=14 ; 2 masks x (2 classes + 5)
size=1
stride=1
activation=linear

[yolo]
mask=0,1
anchors=1,2, 3,4
classes=2
num=2
"""


def rejected(capsys, call, *args):
    """The one-line rejection (exit 65) a step script gives for bad input."""
    with pytest.raises(SystemExit) as stop:
        call(*args)
    assert stop.value.code == step_sdk.EX_DATAERR
    err = capsys.readouterr().err.strip()
    assert err.startswith("ERROR: ") and "\n" not in err
    return err


def test_darknet_cfg_parses_into_planned_layers_with_their_weight_counts(tmp_path):
    cfg = tmp_path / "m.cfg"
    cfg.write_text(CFG)
    sections = darknet.read_cfg(str(cfg))
    assert [s.kind for s in sections] == ["net", "convolutional", "maxpool", "convolutional", "yolo"]
    assert sections[3].text("filters") == "14"  # the trailing ; comment is dropped
    shape, layers = darknet.plan(sections)
    assert shape == (8, 8, 3)
    assert [layer.shape for layer in layers] == [(8, 8, 4), (4, 4, 4), (4, 4, 14), (4, 4, 14)]
    # conv 1: bias 4 + BN (scale, mean, variance) 12 + kernel 4*3*3*3; conv 2: bias 14 + kernel 14*4
    assert [layer.floats for layer in layers] == [4 + 12 + 108, 0, 14 + 56, 0]
    assert layers[3].params["head"]["anchors"] == [[1.0, 2.0], [3.0, 4.0]]


@pytest.mark.parametrize("text, cause", [
    ("[convolutional]\nfilters=1\n", "the first section must be [net]"),
    ("[net]\nwidth=8\nheight=8\n[dropout]\n", "unknown layer type [dropout]"),
    ("[net]\nwidth=8\nheight=8\n[convolutional]\nfilters=x\n", "filters=x is not an integer"),
    ("[net]\nwidth=8\nheight=8\n[route]\nlayers=-3\n", "out of range"),
    ("[net]\nwidth=8\nheight=8\n[convolutional]\nfilters=4\n[yolo]\nclasses=2\nmask=0\n",
     "the previous layer has 4 channels"),
])
def test_darknet_cfg_errors_name_the_file_line_and_cause(tmp_path, capsys, text, cause):
    cfg = tmp_path / "bad.cfg"
    cfg.write_text(text)

    def parse_and_plan(path):
        darknet.plan(darknet.read_cfg(path))

    err = rejected(capsys, parse_and_plan, str(cfg))
    assert str(cfg) in err and cause in err


def _weights(path, floats, major=0, minor=2):
    head = struct.pack("<3i", major, minor, 0) + (struct.pack("<q", 7) if major * 10 + minor >= 2 else
                                                   struct.pack("<i", 7))
    path.write_bytes(head + np.asarray(floats, dtype="<f4").tobytes())
    return path


def test_darknet_weights_header_versions_and_exact_length(tmp_path, capsys):
    header, floats = darknet.read_weights(str(_weights(tmp_path / "new.weights", [1, 2, 3])), 3)
    assert header["seen"] == 7 and floats.tolist() == [1.0, 2.0, 3.0]
    header, floats = darknet.read_weights(str(_weights(tmp_path / "old.weights", [4, 5], 0, 1)), 2)
    assert (header["minor"], floats.tolist()) == (1, [4.0, 5.0])  # 32-bit `seen` before version 0.2
    short = str(_weights(tmp_path / "short.weights", [1, 2]))
    assert "needs 3 floats after the header, the file holds 2 (1 missing)" in rejected(capsys, darknet.read_weights,
                                                                                       short, 3)
    long = str(_weights(tmp_path / "long.weights", [1, 2, 3, 4]))
    assert "1 floats left over" in rejected(capsys, darknet.read_weights, long, 3)


def test_compare_pairs_outputs_by_name_order_or_unique_shape():
    a, b = np.zeros((2, 3)), np.zeros((2, 5))
    assert parity.pair({"y": a, "z": b}, {"z": b, "y": a}) == ([("y", "y"), ("z", "z")], "name")
    assert parity.pair({"y": a, "z": b}, {"out0": a, "out1": b}) == ([("y", "out0"), ("z", "out1")], "order")
    assert parity.pair({"y": a, "z": b}, {"out0": b, "out1": a}) == ([("y", "out1"), ("z", "out0")], "shape")
    pairs, why = parity.pair({"y": a}, {"p": a, "q": b})
    assert pairs is None and why == "count mismatch: 1 reference output(s), 2 converted"


def test_layout_adapters_transpose_nchw_batches_and_back():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 1, 3, 4, 5)  # K=2 samples of NCHW 1x3x4x5
    feeds, layout = runtimes.adapt_inputs([Spec("serving_default_input_0:0", [1, 4, 5, 3], "float32")],
                                          {"input_0": x})
    assert layout == {"input_0": "NCHW->NHWC"}
    assert np.array_equal(feeds["serving_default_input_0:0"], x.transpose(0, 1, 3, 4, 2))
    same, layout = runtimes.adapt_inputs([Spec("input_0", [1, 3, 4, 5], "float32")], {"input_0": x})
    assert layout == {"input_0": "same"} and np.array_equal(same["input_0"], x)
    ref = {"y": x}
    back, layout = runtimes.adapt_outputs({"Identity:0": x.transpose(0, 1, 3, 4, 2)}, ref)
    assert layout == {"y": "NHWC->NCHW"} and np.array_equal(back["y"], x)


def test_layout_adapter_prefers_the_layout_closer_to_the_reference_when_both_fit():
    ref = np.random.default_rng(0).normal(size=(1, 1, 4, 4, 4)).astype(np.float32)
    got = ref.transpose(0, 1, 3, 4, 2)  # square: both layouts have the reference's shape
    back, layout = runtimes.adapt_outputs({"y": got}, {"y": ref})
    assert layout == {"y": "NHWC->NCHW"} and np.array_equal(back["y"], ref)


def test_step_sdk_spells_outcomes_once(tmp_path, capsys):
    assert step_sdk.boolean("true") is True and step_sdk.boolean("0") is False and step_sdk.boolean(True) is True
    assert "expected true or false" in rejected(capsys, step_sdk.boolean, "maybe")
    with pytest.raises(SystemExit) as stop:
        step_sdk.fail("converter broke")
    assert stop.value.code == step_sdk.EX_SOFTWARE and capsys.readouterr().err == "ERROR: converter broke\n"
    step_sdk.runner_done(str(tmp_path), {"inputs": [], "outputs": [], "samples": 0})
    from orchestrator import protocol

    assert protocol.read("run", tmp_path / "run.json")[1] is None
    assert protocol.read("step", tmp_path / "step.json")[1] is None
    assert json.loads((tmp_path / "step.json").read_text())["artifacts"] == ["outputs.npz"]


def test_versions_name_a_cpu_build_by_its_package(monkeypatch):
    """The images install tensorflow-cpu: its version is reported as "tensorflow", as the manifests always did."""
    from importlib import metadata

    installed = {"tensorflow-cpu": "2.15.1", "tf-keras": "2.15.1", "numpy": "1.26.4"}

    def version(dist):
        if dist not in installed:
            raise metadata.PackageNotFoundError(dist)
        return installed[dist]

    monkeypatch.setattr(metadata, "version", version)
    for name in ("tensorflow", "tf_keras", "torch"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    found = step_sdk.versions()
    assert found["tensorflow"] == "2.15.1" and found["tf_keras"] == "2.15.1"
    assert "torch" not in found and "tensorflow-cpu" not in found and "tensorflow_cpu" not in found


# --- names TensorFlow accepts (onnx2tf stack's name_map), the op set of a .tflite ---

import name_map  # noqa: E402
import tflite_runtime  # noqa: E402


def test_safe_names_are_unique_short_and_tensorflow_legal():
    taken = {"a_b"}
    made = []
    for name in ("a b", "a:b", "-lead", "1st", "conv #1 (\u03b4)", "x" * 300, "tab\tname"):
        safe = name_map._safe_form(name, taken)
        taken.add(safe)
        made.append(safe)
        assert name_map.SAFE.match(safe), (name, safe)
    assert made[0] == "a_b_1" and made[1] == "a_b_2"  # clashes get a suffix, never another tensor's name
    assert made[2] == "lead" and made[3] == "n_1st" and len(made[5]) < 128
    assert name_map._safe_form("x" * 300, set()) != name_map._safe_form("x" * 299 + "y", set())


def test_errors_speak_the_users_names():
    mapping = {"a_b": "a b", "a_b_1": "a:b", "scores_0": "-scores:0 / \u03c3"}
    text = "output 'scores_0' differs; node a_b_1 and a_b"
    assert name_map.speak(text, mapping) == "output '-scores:0 / \u03c3' differs; node a:b and a b"
    assert name_map.speak(text, {}) == text


def test_op_set_splits_builtin_custom_and_flex():
    split = tflite_runtime.op_set({"CONV_2D": 3, "FlexErf": 2, "TFLite_Detection_PostProcess": 1, "ADD": 1})
    assert split == {"builtin": {"ADD": 1, "CONV_2D": 3}, "custom": {"TFLite_Detection_PostProcess": 1},
                     "flex": {"FlexErf": 2}}


def test_the_tflite_converters_flex_error_is_said_plainly():
    import tflite_convert

    message = ("<unknown>:0: error: failed while converting: 'main': \nSome ops are not supported by the native TFLite "
               "runtime, you can enable TF kernels fallback using TF Select. See instructions: ... \n"
               "TF Select ops: Erf, ResizeBicubic\nDetails:\n\ttf.Erf(tensor<1x4xf32>) -> (tensor<1x4xf32>)\n")
    said = tflite_convert.needs_flex(message)
    assert "(FlexErf, FlexResizeBicubic)" in said and "--allow_flex_ops" in said and "\n" not in said
    assert tflite_convert.needs_flex("error: 'tf.Foo' op is neither a custom op nor a flex op") is None
