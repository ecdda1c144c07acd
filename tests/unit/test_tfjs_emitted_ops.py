"""The table of what tensorflowjs_converter 4.22 writes (images/tf2/steps/tfjs_emitted_ops.json) and the split that
tfjs_graph_to_saved_model.py makes of each entry, on model.json nodes (no TensorFlow: a numpy stand-in runs the
rebuilt nodes against what the TF.js runtime computes for the fused node)."""

import base64
import sys
from pathlib import Path

import numpy as np
import pytest

IMAGES = Path(__file__).resolve().parents[2] / "images"
for folder in ("shared", "tf2/steps"):
    sys.path.insert(0, str(IMAGES / folder))

import step_sdk  # noqa: E402
import tfjs_graph_to_saved_model as step  # noqa: E402

TABLE = step.load_table()
SPLIT = [e for e in TABLE["entries"] if e["split"]]
REFUSED = [e for e in TABLE["entries"] if not e["split"]]
# the attributes of TensorFlow 2.15's base ops (op_def_registry in the step)
ATTRS = {"Conv2D": {"T", "strides", "use_cudnn_on_gpu", "padding", "explicit_paddings", "data_format", "dilations"},
         "DepthwiseConv2dNative": {"T", "strides", "padding", "explicit_paddings", "data_format", "dilations"},
         "MatMul": {"T", "transpose_a", "transpose_b", "grad_a", "grad_b"}}
TF_OPS = {"Conv2D", "DepthwiseConv2dNative", "MatMul", "AddV2", "BiasAdd", "Relu", "Relu6", "Elu", "Sigmoid", "Tanh",
          "LeakyRelu", "Neg", "Mul"}


def b64(s):
    return base64.b64encode(s.encode()).decode()


def key(e):
    return step.label(e["op"], e["fused_ops"])


def test_table_entries_are_well_formed():
    assert TABLE["tensorflowjs"] == "4.22.0"
    keys = [key(e) for e in TABLE["entries"]]
    assert len(keys) == len(set(keys)), "an entry is listed twice"
    for e in TABLE["entries"]:
        assert e["file"].startswith("tensorflowjs/converters/") and e["file"].endswith(".py") and e["function"]
        assert e["when"] in ("always", "onednn", "batch-norm-not-folded")
        assert isinstance(e["tfjs_runtime"], bool) and isinstance(e["split"], bool)
        assert ("why" in e) == (not e["split"]), key(e)
        assert (e["op"] in TABLE["fused"]) == bool(e["fused_ops"]), key(e)
        assert all(p in TABLE["parts"] for p in e["fused_ops"]), key(e)
        # a fused op carries one contraction extra (BiasAdd or FusedBatchNorm, or NoOp) and at most one activation
        if e["fused_ops"]:
            assert e["fused_ops"][0] in ("BiasAdd", "NoOp", "FusedBatchNorm") and len(e["fused_ops"]) <= 2


def test_the_activations_the_issue_names_are_covered_for_every_fused_op():
    fused = {(e["op"], tuple(e["fused_ops"])) for e in SPLIT}
    for act in ("Relu", "Relu6", "Elu", "LeakyRelu", "Prelu", "Sigmoid", "Tanh"):
        assert ("_FusedMatMul", ("BiasAdd", act)) in fused
    for act in ("Relu", "Relu6", "Elu", "LeakyRelu", "Prelu"):
        assert ("_FusedConv2D", ("BiasAdd", act)) in fused
    for act in ("Relu", "Relu6", "Elu", "Prelu"):
        assert ("FusedDepthwiseConv2dNative", ("BiasAdd", act)) in fused
    assert ("Prelu", ()) in fused and ("BiasAdd", ()) in fused
    # the TF.js runtime has no fused tanh (tfjs-core's applyActivation), and refuses FusedBatchNorm in a fused conv
    assert [key(e) for e in TABLE["entries"] if not e["tfjs_runtime"]] == \
        [key(e) for e in REFUSED] + ["_FusedMatMul[BiasAdd,Tanh]"]


def fused_node(entry, name="n", **attr):
    op, fused = entry["op"], entry["fused_ops"]
    nargs = sum(TABLE["parts"][p] for p in fused)
    attrs = {"T": {"type": "DT_FLOAT"}, "fused_ops": {"list": {"s": [b64(p) for p in fused]}},
             "num_args": {"i": str(nargs)}, "TArgs": {"list": {"type": ["DT_FLOAT"] * nargs}},
             "epsilon": {"f": 0.0}, "leakyrelu_alpha": {"f": 0.3}, "strides": {"list": {"i": ["1"] * 4}}}
    if op == "_FusedMatMul":
        attrs.update(transpose_a={"b": False}, transpose_b={"b": True})
    else:
        attrs.update(padding={"s": b64("SAME")}, data_format={"s": b64("NHWC")},
                     dilations={"list": {"i": ["1", "2", "2", "1"]}})
    attrs.update(attr)
    inputs = ["x", "w"] + [f"arg{i}" for i in range(nargs)] if fused else ["x", "arg0"]
    return {"name": name, "op": op, "input": inputs, "attr": attrs}


def split(nodes):
    return step.unfuse(nodes, TABLE, ATTRS.get, "g/model.json")


def run(nodes, values):
    """A numpy stand-in for the rebuilt nodes (a convolution passes x through: only what follows it is checked)."""
    values = dict(values)
    for n in nodes:
        x = [values[i] for i in n["input"] if not i.startswith("^")]
        a = n.get("attr", {})
        if n["op"] == "MatMul":
            left, right = (v.T if a[t]["b"] else v for v, t in zip(x, ("transpose_a", "transpose_b")))
            values[n["name"]] = left @ right
        else:
            values[n["name"]] = {
                "Conv2D": lambda: x[0], "DepthwiseConv2dNative": lambda: x[0], "AddV2": lambda: x[0] + x[1],
                "Neg": lambda: -x[0], "Mul": lambda: x[0] * x[1], "Relu": lambda: np.maximum(x[0], 0),
                "Relu6": lambda: np.clip(x[0], 0, 6), "Elu": lambda: np.where(x[0] > 0, x[0], np.expm1(x[0])),
                "Sigmoid": lambda: 1 / (1 + np.exp(-x[0])), "Tanh": lambda: np.tanh(x[0]),
                "LeakyRelu": lambda: np.where(x[0] < 0, a["alpha"]["f"] * x[0], x[0])}[n["op"]]()
    return values


def tfjs(entry, values):
    """What the TF.js runtime computes for the fused node (tfjs-core fused ops, applyActivation)."""
    x, w = values["x"], values["w"]
    y = x @ w.T if entry["op"] == "_FusedMatMul" else x
    args = [values[f"arg{i}"] for i in range(3)]
    for part in entry["fused_ops"]:
        if part == "BiasAdd":
            y = y + args.pop(0)
        elif part == "Prelu":
            y = np.where(y < 0, args.pop(0) * y, y)
        elif part != "NoOp":
            y = {"Relu": lambda: np.maximum(y, 0), "Relu6": lambda: np.clip(y, 0, 6), "Tanh": lambda: np.tanh(y),
                 "Elu": lambda: np.where(y > 0, y, np.expm1(y)), "Sigmoid": lambda: 1 / (1 + np.exp(-y)),
                 "LeakyRelu": lambda: np.where(y < 0, 0.3 * y, y)}[part]()
    return y


@pytest.mark.parametrize("entry", [e for e in SPLIT if e["fused_ops"]], ids=key)
def test_every_fused_entry_splits_into_tensorflow_ops_that_compute_what_tfjs_computes(entry):
    consumer = {"name": "after", "op": "Relu", "input": ["n"], "attr": {}}
    nodes, done = split([fused_node(entry), consumer])
    assert done == {key(entry): 1}
    assert {n["op"] for n in nodes} <= TF_OPS
    assert nodes[-1] is consumer and nodes[-2]["name"] == "n"  # the consumers still read the same name
    base = nodes[0]
    assert base["op"] == TABLE["fused"][entry["op"]] and base["input"][:2] == ["x", "w"]
    assert set(base["attr"]) <= ATTRS[base["op"]] and "fused_ops" not in base["attr"] and "TArgs" not in base["attr"]
    if entry["op"] != "_FusedMatMul":
        assert base["attr"]["dilations"] == {"list": {"i": ["1", "2", "2", "1"]}}  # dilations and padding kept
    rng = np.random.default_rng(0)
    values = {"x": rng.normal(size=(2, 5)).astype("float32"), "w": rng.normal(size=(5, 5)).astype("float32"),
              "arg0": rng.normal(size=5), "arg1": rng.uniform(0.1, 0.5, size=5), "arg2": rng.normal(size=5)}
    np.testing.assert_allclose(run(nodes[:-1], values)["n"], tfjs(entry, values), rtol=1e-6, atol=1e-6)


def test_the_converters_own_prelu_and_bias_add_become_tensorflow_ops():
    prelu = {"name": "p", "op": "Prelu", "input": ["x", "alpha", "^ready"], "attr": {}}
    bias = {"name": "b", "op": "BiasAdd", "input": ["x", "residual"],
            "attr": {"T": {"type": "DT_FLOAT"}, "data_format": {"s": b64("NHWC")}}}
    nodes, done = split([prelu, bias])
    assert done == {"Prelu": 1, "BiasAdd": 1} and {n["op"] for n in nodes} <= TF_OPS
    assert [n for n in nodes if "^ready" in n["input"]] == [nodes[0]]  # the control input is kept once
    assert nodes[-1] == {"name": "b", "op": "AddV2", "input": ["x", "residual"], "attr": {"T": {"type": "DT_FLOAT"}}}
    x = np.linspace(-2, 2, 12).reshape(3, 4)
    alpha = np.array([0.1, 0.2, 0.3, 0.4])
    got = run(nodes, {"x": x, "alpha": alpha, "residual": np.ones((3, 4))})
    np.testing.assert_allclose(got["p"], np.where(x < 0, alpha * x, x))
    np.testing.assert_allclose(got["b"], x + 1)


def test_nchw_bias_goes_along_channels_and_a_missing_alpha_is_tensorflows_default():
    entry = next(e for e in SPLIT if key(e) == "_FusedConv2D[BiasAdd,LeakyRelu]")
    node = fused_node(entry, data_format={"s": b64("NCHW")})
    del node["attr"]["leakyrelu_alpha"]
    nodes, _ = split([node])
    assert [n["op"] for n in nodes] == ["Conv2D", "BiasAdd", "LeakyRelu"]
    assert nodes[1]["attr"]["data_format"] == {"s": b64("NCHW")} and nodes[2]["attr"]["alpha"] == {"f": 0.2}


def test_names_already_in_the_graph_are_not_reused():
    entry = next(e for e in SPLIT if key(e) == "_FusedMatMul[BiasAdd,Relu]")
    taken = {"name": "n/unfused", "op": "Placeholder", "input": [], "attr": {}}
    nodes, _ = split([taken, fused_node(entry)])
    names = [n["name"] for n in nodes]
    assert len(names) == len(set(names)) and names[1] == "n/unfused_1" and nodes[2]["input"][0] == "n/unfused_1"


def refusal(capsys, nodes):
    with pytest.raises(SystemExit) as stop:
        split(nodes)
    assert stop.value.code == step_sdk.EX_DATAERR
    err = capsys.readouterr().err.strip()
    assert err.startswith("ERROR: g/model.json: ") and "\n" not in err
    return err


@pytest.mark.parametrize("entry", REFUSED, ids=key)
def test_entries_the_step_cannot_split_are_refused_with_why(capsys, entry):
    err = refusal(capsys, [fused_node(entry)])
    assert f"node 'n' is {key(entry)}: {entry['why']}" in err


def test_forms_the_converter_does_not_write_are_refused(capsys):
    entry = {"op": "_FusedConv2D", "fused_ops": ["BiasAdd", "Tanh"]}
    err = refusal(capsys, [fused_node(entry)])
    assert "node 'n' is _FusedConv2D[BiasAdd,Tanh], which tensorflowjs_converter 4.22.0 does not write" in err
    node = fused_node(next(e for e in SPLIT if key(e) == "_FusedMatMul[BiasAdd,Prelu]"))
    node["input"].pop()  # the alpha is missing
    assert "has 1 extra input(s) where its fused_ops take 2" in refusal(capsys, [node])

