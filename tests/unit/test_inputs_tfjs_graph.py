"""A TF.js graph model's inputs and outputs, read on the host from model.json: its signature, or without one what
the TF.js runtime takes (its OperationMapper: Placeholder* nodes in, every node nothing consumes out), or the
nodes --input_names / --output_names choose (op or tensor spelling)."""

import json

import pytest

from orchestrator import formats, pipeline
from orchestrator.errors import InputError
from orchestrator.inputs import graph_io, node_name


def node(name, op, *inputs, dtype="DT_FLOAT", shape=None):
    n = {"name": name, "op": op, "input": list(inputs), "attr": {"dtype": {"type": dtype}}}
    if shape is not None:
        n["attr"]["shape"] = {"shape": {"dim": [{"size": str(d)} for d in shape]}}
    return n


GRAPH = {"modelTopology": {"node": [
    node("x", "Placeholder", shape=[-1, 4]), node("ids", "PlaceholderWithDefault", "d", dtype="DT_INT32", shape=[-1]),
    node("d", "Const", dtype="DT_INT32"), node("w", "Const"), node("mm", "MatMul", "x", "w:0"),
    node("Identity", "Identity", "mm"), node("g", "GatherV2", "w", "ids", "d"), node("Identity_1", "Identity", "g"),
    node("assert", "NoOp", "^mm")]}}


def test_names_in_either_spelling():
    assert [node_name(n) for n in ("x", "x:0", "^x", "a/b:12", "a:b")] == ["x", "x", "x", "a/b", "a:b"]


def test_without_a_signature_the_runtimes_inputs_and_outputs():
    io = graph_io("model.json", GRAPH, {})
    assert io["source"] == "inferred"
    assert io["inputs"] == [{"name": "x", "dtype": "float32", "shape": [-1, 4]},
                            {"name": "ids", "dtype": "int32", "shape": [-1]}]
    assert [t["name"] for t in io["outputs"]] == ["Identity", "Identity_1"]  # no NoOp: it has no tensor


def test_given_names_and_signatures_in_op_spelling():
    io = graph_io("model.json", GRAPH, {"output_names": "mm:0,g"})
    assert [t["name"] for t in io["outputs"]] == ["mm", "g"] and io["source"] == "inferred, outputs --output_names"
    signed = dict(GRAPH, signature={"inputs": {"x": {"name": "x"}}, "outputs": {"y": {"name": "Identity:0"}}})
    io = graph_io("model.json", signed, {})
    assert (io["source"], [t["name"] for t in io["inputs"]], [t["name"] for t in io["outputs"]]) == (
        "signature", ["x"], ["Identity"])


def test_a_name_the_graph_lacks_is_refused_naming_it():
    with pytest.raises(InputError, match=r"model.json: the graph has no node 'nope' \(--input_names\)"):
        graph_io("model.json", GRAPH, {"input_names": ["nope:0"]})
    with pytest.raises(InputError, match="has no inputs"):
        graph_io("model.json", {"modelTopology": {"node": [node("c", "Const")]}}, {})


def test_the_first_step_gets_what_was_inferred_and_the_manifest_records_it(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "model.json").write_text(json.dumps(dict(GRAPH, format="graph-model", weightsManifest=[])))
    job = pipeline.plan_job("tfjs_graph_model", folder / "model.json", "tflite")
    mounted = formats.get("tfjs_graph_model").adapter.prepare(job.input, job.values, tmp_path / "scratch")
    assert mounted.args == ["--input_names", "x,ids", "--output_names", "Identity,Identity_1"]
    assert mounted.facts["graph_io"]["source"] == "inferred"
    lines = formats.get("tfjs_graph_model").adapter.describe(job.input)
    assert lines[0] == "  graph inputs (inferred): x float32[-1, 4], ids int32[-1]"
    # given names go to the step as options, not twice
    job = pipeline.plan_job("tfjs_graph_model", folder / "model.json", "tflite", {"output_names": "mm"})
    mounted = formats.get("tfjs_graph_model").adapter.prepare(job.input, job.values, tmp_path / "scratch2")
    assert mounted.args == ["--input_names", "x,ids"]
