"""The tensorflowjs_converter table through `orchestrator convert`, every TF.js result loaded and run in the
pure-JavaScript TF.js runtime stack and compared with the source model."""

import base64
import json
import shutil

import pytest

from clihelp import REPO, cli, last_line, manifest

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def layers_model(samples, tmp_path_factory):
    """A TF.js layers model made from the sample Keras CNN (through the CLI)."""
    out = tmp_path_factory.mktemp("tfjs") / "layers"
    proc = cli("convert", "keras", samples[("keras", "cnn")] / "model.h5", out, "--to", "tfjs_layers_model")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def convert(*args):
    proc = cli("convert", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return manifest(args[2])


def verified_in(m, result_stack, reference_stack="tf2"):
    v = m["verification"]
    assert v["passed"] is True and v["outputs"]
    assert [s["stack"] for s in v["steps"]] == [reference_stack, result_stack, "tf2"]
    for o in v["outputs"]:
        assert o["passed"] and o["shape"] == o["result_shape"] and o["max_rel_err"] <= v["tolerance"]
    return v


def shards(out):
    doc = json.loads((out / "model.json").read_text())
    return [p for g in doc["weightsManifest"] for p in g["paths"]]


def test_keras_to_layers_model_runs_in_tfjs(layers_model):
    m = manifest(layers_model)
    assert m["steps"][0]["info"]["format"] == "layers-model"
    assert all((layers_model / p).is_file() for p in shards(layers_model))
    assert set(shards(layers_model)) <= set(m["artifacts"])
    v = verified_in(m, "tfjs")
    assert v["steps"][1]["versions"]["tfjs"] == "4.22.0"


def test_keras_to_graph_model_float16(samples, tmp_path):
    m = convert("keras", samples[("keras", "cnn")] / "model.h5", tmp_path / "out", "--to", "tfjs_graph_model",
                "--quantize_float16")
    assert m["steps"][0]["info"]["format"] == "graph-model"
    assert "float16" in m["steps"][0]["info"]["quantization"]
    v = verified_in(m, "tfjs")
    assert v["mode"] == "weights_float16" and v["tolerance"] == 1e-2


def test_keras_saved_model_to_layers_model(samples, tmp_path):
    m = convert("keras_saved_model", samples[("keras_saved_model", "cnn")] / "keras_saved_model", tmp_path / "out",
                "--to", "tfjs_layers_model")
    verified_in(m, "tfjs")


def test_tf_saved_model_to_graph_model(samples, tmp_path):
    m = convert("tf_saved_model", samples[("tf_saved_model", "multi")] / "saved_model", tmp_path / "out",
                "--to", "tfjs_graph_model", "--signature_name", "serving_default", "--saved_model_tags", "serve")
    v = verified_in(m, "tfjs")
    assert len(v["outputs"]) == 2


def test_tf_frozen_model_to_graph_model(samples, tmp_path):
    src = samples[("tf_frozen_model", "multi")]
    info = json.loads((src / "sample.json").read_text())
    m = convert("tf_frozen_model", src / "frozen_model.pb", tmp_path / "out", "--to", "tfjs_graph_model",
                "--output_node_names", ",".join(info["output_arrays"]))
    assert m["steps"][0]["info"]["format"] == "graph-model"
    assert len(verified_in(m, "tfjs")["outputs"]) == 2


def test_layers_model_to_keras_and_keras_saved_model(layers_model, tmp_path):
    m = convert("tfjs_layers_model", layers_model / "model.json", tmp_path / "h5", "--to", "keras")
    assert (tmp_path / "h5" / "model.h5").read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"
    verified_in(m, "tf2", reference_stack="tfjs")
    m = convert("tfjs_layers_model", layers_model / "model.json", tmp_path / "sm", "--to", "keras_saved_model")
    assert (tmp_path / "sm" / "keras_saved_model" / "saved_model.pb").is_file()
    verified_in(m, "tf2", reference_stack="tfjs")


def test_layers_model_reshard_and_quantize(layers_model, tmp_path):
    m = convert("tfjs_layers_model", layers_model / "model.json", tmp_path / "out", "--to", "tfjs_layers_model",
                "--weight_shard_size_bytes", "256", "--quantize_uint8")
    assert len(shards(tmp_path / "out")) > len(shards(layers_model))
    v = verified_in(m, "tfjs", reference_stack="tfjs")
    assert v["mode"] == "weights_uint8"


def test_layers_model_to_graph_model(layers_model, tmp_path):
    verified_in(convert("tfjs_layers_model", layers_model / "model.json", tmp_path / "out", "--to",
                        "tfjs_graph_model"), "tfjs", reference_stack="tfjs")


def test_layers_model_to_tflite(layers_model, tmp_path):
    m = convert("tfjs_layers_model", layers_model / "model.json", tmp_path / "out", "--to", "tflite")
    assert [s["name"] for s in m["steps"]] == ["tfjs_layers_to_keras", "keras_to_tflite"]
    assert (tmp_path / "out" / "model.tflite").is_file() and (tmp_path / "out" / "model.h5").is_file()
    verified_in(m, "tf2", reference_stack="tfjs")


def test_quantization_bytes_is_deprecated_but_works(samples, tmp_path):
    proc = cli("convert", "keras", samples[("keras", "cnn")] / "model.h5", tmp_path / "out", "--to",
               "tfjs_layers_model", "--quantization_bytes", "2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--quantization_bytes is deprecated" in proc.stderr
    assert manifest(tmp_path / "out")["verification"]["mode"] == "weights_uint16"


# -- bad model.json ---------------------------------------------------------------------------
def broken_copy(layers_model, tmp_path, edit):
    model = tmp_path / "model"
    shutil.copytree(layers_model, model)
    edit(model)
    return model / "model.json"


def refused(proc, tmp_path, *fragments):
    assert proc.returncode == 2, proc.stderr[-2000:]
    for fragment in fragments:
        assert fragment in last_line(proc)
    assert not (tmp_path / "out").exists()


def test_missing_shard(layers_model, tmp_path):
    path = broken_copy(layers_model, tmp_path, lambda m: (m / shards(m)[0]).unlink())
    refused(cli("convert", "tfjs_layers_model", path, tmp_path / "out"), tmp_path, "model.json",
            f"weight shard '{shards(layers_model)[0]}' is missing")


def test_shard_of_wrong_length(layers_model, tmp_path):
    def cut(m):
        shard = m / shards(m)[0]
        shard.write_bytes(shard.read_bytes()[:-4])
    path = broken_copy(layers_model, tmp_path, cut)
    refused(cli("convert", "tfjs_layers_model", path, tmp_path / "out"), tmp_path, "hold", "bytes but the manifest "
            "declares")


def test_shard_path_outside_the_folder(layers_model, tmp_path):
    def escape(m):
        doc = json.loads((m / "model.json").read_text())
        doc["weightsManifest"][0]["paths"][0] = "../../etc/passwd"
        (m / "model.json").write_text(json.dumps(doc))
    path = broken_copy(layers_model, tmp_path, escape)
    refused(cli("convert", "tfjs_layers_model", path, tmp_path / "out"), tmp_path,
            "weight path '../../etc/passwd' points outside the model folder")


def test_malformed_json(layers_model, tmp_path):
    path = broken_copy(layers_model, tmp_path, lambda m: (m / "model.json").write_text('{"modelTopology": '))
    refused(cli("convert", "tfjs_layers_model", path, tmp_path / "out"), tmp_path, "model.json", "not valid JSON")


# -- a trained head merged under a base network (the gesture-classifier case) ---------------------
def test_head_merged_under_base_to_tflite(head_and_base, tmp_path):
    base, head = head_and_base
    m = convert("tfjs_layers_model", head, tmp_path / "out", "--to", "tflite", "--base-model", base,
                "--base-layer", "features")
    merged = m["steps"][0]["info"]["merged"]
    assert merged["base_layer"] == "features" and merged["feature_shape"] == [16]
    assert merged["inputs"] == [[None, 32, 32, 3]] and merged["outputs"] == [[None, 4]]
    v = verified_in(m, "tf2")
    assert v["outputs"][0]["shape"] == [1, 4]


def test_head_that_does_not_fit_names_both_shapes(head_and_base, tmp_path):
    base, head = head_and_base
    proc = cli("convert", "tfjs_layers_model", head, tmp_path / "out", "--to", "tflite", "--base_model", base,
               "--base_layer", "image")
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = last_line(proc)
    assert "[None, 16]" in line and "[None, 32, 32, 3]" in line and "'image'" in line
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def cnn_graph(samples, tmp_path_factory):
    graph = tmp_path_factory.mktemp("cnn-graph") / "graph"
    convert("keras", samples[("keras", "cnn")] / "model.h5", graph, "--to", "tfjs_graph_model", "--no-verify")
    return graph


def test_graph_model_to_tflite_and_saved_model(cnn_graph, tmp_path):
    graph = cnn_graph
    m = convert("tfjs_graph_model", graph / "model.json", tmp_path / "out", "--to", "tflite")
    assert [s["name"] for s in m["steps"]] == ["tfjs_graph_to_tf_saved_model", "tf_saved_model_to_tflite"]
    assert m["steps"][0]["info"]["unfused"] >= 1  # the TF.js converter's fused depthwise conv, split back
    assert "FusedDepthwiseConv2dNative" not in m["steps"][0]["info"]["ops"]
    verified_in(m, "tf2", reference_stack="tfjs")
    m = convert("tfjs_graph_model", graph / "model.json", tmp_path / "sm", "--to", "tf_saved_model")
    assert (tmp_path / "sm" / "saved_model" / "saved_model.pb").is_file()
    verified_in(m, "tf2", reference_stack="tfjs")


def edited_graph(cnn_graph, tmp_path, edit):
    folder = tmp_path / "edited"
    shutil.copytree(cnn_graph, folder)
    doc = json.loads((folder / "model.json").read_text())
    edit(doc)
    (folder / "model.json").write_text(json.dumps(doc))
    return folder / "model.json"


def test_graph_model_without_a_signature_runs_as_tfjs_runs_it(cnn_graph, tmp_path):
    """Older converters and many published models write no signature: inputs and outputs are inferred as the TF.js
    runtime infers them (Placeholders in, nodes nothing consumes out), shown by plan, recorded in the manifest."""
    model = edited_graph(cnn_graph, tmp_path, lambda doc: doc.pop("signature"))
    proc = cli("plan", "tfjs_graph_model", "--input", model)
    assert "graph inputs (inferred): image float32[-1, 32, 32, 3]" in proc.stdout
    assert "graph outputs (inferred): Identity float32" in proc.stdout
    m = convert("tfjs_graph_model", model, tmp_path / "out")
    assert m["input"]["model"]["graph_io"]["source"] == "inferred"
    assert m["steps"][0]["info"]["inputs"] == ["image"] and m["steps"][0]["info"]["outputs"] == ["Identity"]
    verified_in(m, "tf2", reference_stack="tfjs")


def test_op_names_in_the_signature_and_a_chosen_output(cnn_graph, tmp_path):
    """A signature naming ops ('image', not 'image:0'), and --output_names choosing an inner node (tensor spelling)."""
    def op_names(doc):
        for kind in ("inputs", "outputs"):
            for entry in doc["signature"][kind].values():
                entry["name"] = entry["name"].split(":")[0]
    model = edited_graph(cnn_graph, tmp_path, op_names)
    features = next(n["name"] for n in json.loads(model.read_text())["modelTopology"]["node"]
                    if n["name"].endswith("features/Mean"))
    m = convert("tfjs_graph_model", model, tmp_path / "out", "--output_names", features + ":0")
    assert [(o["name"], o["shape"]) for o in m["verification"]["outputs"]] == [(features, [1, 16])]
    verified_in(m, "tf2", reference_stack="tfjs")


def test_lstm_graph_model_to_tflite_is_refused_clearly(stack_images, tmp_path):
    """TF.js converts and runs an LSTM graph model, but its TensorList control flow has no static shape for
    TFLite: the route stops with the converter's own words, in one line, and writes nothing."""
    assert cli("sample", "keras", tmp_path / "lstm", "--kind", "lstm").returncode == 0
    m = convert("keras", tmp_path / "lstm" / "model.h5", tmp_path / "graph", "--to", "tfjs_graph_model")
    # its control flow needs executeAsync(): the runner falls back to it, and the summary and model.json say so
    assert m["verification"]["result_execution"].startswith("executeAsync (execute() refused:")
    meta = json.loads((tmp_path / "graph" / "model.json").read_text())["userDefinedMetadata"]["orchestrator"]
    assert meta["execution"] == "executeAsync" and meta["why"].startswith("dynamic ops:")
    proc = cli("convert", "tfjs_graph_model", tmp_path / "graph" / "model.json", tmp_path / "out")
    assert proc.returncode == 3, proc.stderr[-2000:]
    line = last_line(proc)
    assert "the TFLite converter failed" in line and "TensorList" in line and "Traceback" not in line
    assert not (tmp_path / "out").exists()


def test_local_hub_module_to_graph_model(samples, tmp_path):
    m = convert("tf_hub", samples[("tf_saved_model", "multi")] / "saved_model", tmp_path / "out", "--to",
                "tfjs_graph_model", "--signature_name", "serving_default")
    verified_in(m, "tfjs")


def test_weights_elsewhere_and_named_tflite(layers_model, tmp_path):
    """The gesture-classifier converter's flags: shards in another folder, a chosen .tflite name."""
    model = tmp_path / "model"
    weights = tmp_path / "weights"
    model.mkdir()
    weights.mkdir()
    shutil.copy(layers_model / "model.json", model / "model.json")
    for p in shards(layers_model):
        shutil.copy(layers_model / p, weights / p)
    m = convert("tfjs_layers_model", model / "model.json", tmp_path / "out", "--to", "tflite",
                "--weights_path_prefix", weights, "--model_tflite", "gesture.tflite")
    assert (tmp_path / "out" / "gesture.tflite").read_bytes()[4:8] == b"TFL3"
    assert "gesture.tflite" in m["artifacts"] and set(shards(layers_model)) <= set(m["input"]["sha256"])
    verified_in(m, "tf2", reference_stack="tfjs")


def test_metadata_is_stored_in_model_json(samples, tmp_path):
    (tmp_path / "labels.json").write_text(json.dumps({"labels": ["fist", "palm", "point", "ok", "none"]}))
    m = convert("keras", samples[("keras", "cnn")] / "model.h5", tmp_path / "out", "--to", "tfjs_layers_model",
                "--metadata", f"labels:{tmp_path / 'labels.json'}")
    doc = json.loads((tmp_path / "out" / "model.json").read_text())
    assert doc["userDefinedMetadata"]["labels"]["labels"][0] == "fist"
    assert m["options"]["metadata"] == f"labels:{tmp_path / 'labels.json'}"


def test_hub_module_to_tflite(samples, tmp_path):
    m = convert("tf_hub", samples[("tf_saved_model", "multi")] / "saved_model", tmp_path / "out", "--to", "tflite")
    assert m["route"]["steps"] == ["tf_hub_to_tflite"] and (tmp_path / "out" / "model.tflite").is_file()
    v = m["verification"]
    assert v["passed"] and len(v["outputs"]) == 2 and [s["stack"] for s in v["steps"]] == ["tf2", "tf2", "tf2"]


# -- every form the TF.js converter writes, brought back (images/tf2/steps/tfjs_emitted_ops.json) -------------------
TABLE = json.loads((REPO / "images" / "tf2" / "steps" / "tfjs_emitted_ops.json").read_text())
BY_DEFAULT = {f"{e['op']}[{','.join(e['fused_ops'])}]" if e["fused_ops"] else e["op"]
              for e in TABLE["entries"] if e["split"] and e["when"] == "always"}
# weights by name pattern: convolutions float16, Dense uint8, the rest (Embedding, PReLU alphas, ...) uint16
MIXED = ("--quantize_float16", "*conv*,*depthwise*", "--quantize_uint8", "*dense*", "--quantize_uint16")


def fused_ops(node):
    items = node.get("attr", {}).get("fused_ops", {}).get("list", {}).get("s", [])
    return [base64.b64decode(s).decode() for s in items]


def table_entries_in(doc):
    """The table's entries found in a model.json; 'BiasAdd' where normalize_bias_add made one of an add of a tensor
    (not a weight), whether a fused op then took it or not."""
    weights = {w["name"] for g in doc["weightsManifest"] for w in g["weights"]}
    found = set()
    for n in doc["modelTopology"]["node"]:
        ops = fused_ops(n)
        if n["op"] in TABLE["fused"] or n["op"] == "Prelu":
            found.add(f"{n['op']}[{','.join(ops)}]" if ops else n["op"])
        if n["op"] == "BiasAdd" or (ops[:1] == ["BiasAdd"] and n["input"][2].split(":")[0] not in weights):
            found.add("BiasAdd")
    return found


def fold_into_matmul(model_json, activation):
    """Fold the activation after a Dense into its _FusedMatMul, as TensorFlow's oneDNN remapper does when the TF.js
    converter runs on a host with oneDNN on (the fused node takes the activation's name). Returns the node's name."""
    doc = json.loads(model_json.read_text())
    nodes = doc["modelTopology"]["node"]
    by_name = {n["name"]: n for n in nodes}
    act = next(n for n in nodes if n["op"] == activation and by_name[n["input"][0]]["op"] == "_FusedMatMul"
               and fused_ops(by_name[n["input"][0]]) == ["BiasAdd"])
    matmul = by_name[act["input"][0]]
    assert sum(matmul["name"] in n.get("input", []) for n in nodes) == 1  # the activation is its only consumer
    s = [base64.b64encode(op.encode()).decode() for op in ("BiasAdd", activation)]
    act.update(op="_FusedMatMul", input=matmul["input"], attr=dict(matmul["attr"], fused_ops={"list": {"s": s}}))
    nodes.remove(matmul)
    model_json.write_text(json.dumps(doc))
    return act["name"]


@pytest.fixture(scope="module")
def tfjs_ops(stack_images, tmp_path_factory):
    """The tfjs-ops sample (batch 1, an int32 Embedding input) as a float graph model and as one whose weights are
    float16, uint8 and uint16, both made by the CLI."""
    root = tmp_path_factory.mktemp("tfjs-ops")
    assert cli("sample", "keras", root / "keras", "--kind", "tfjs-ops").returncode == 0
    h5 = root / "keras" / "model.h5"
    convert("keras", h5, root / "float", "--to", "tfjs_graph_model", "--no-verify")
    convert("keras", h5, root / "mixed", "--to", "tfjs_graph_model", "--no-verify", *MIXED)
    return h5, root / "float", root / "mixed"


def test_graph_model_sample_holds_every_form_the_converter_writes_by_default(tfjs_ops):
    _, graph, mixed = tfjs_ops
    for folder in (graph, mixed):
        doc = json.loads((folder / "model.json").read_text())
        assert table_entries_in(doc) == BY_DEFAULT
        inputs = doc["signature"]["inputs"]
        assert inputs["ids"]["dtype"] == "DT_INT32"
        assert {k: int(v["tensorShape"]["dim"][0]["size"]) for k, v in inputs.items()} == {"image": 1, "ids": 1}
    weights = [w for g in json.loads((mixed / "model.json").read_text())["weightsManifest"] for w in g["weights"]]
    stored = {w["name"]: (w.get("quantization") or {}).get("dtype", w["dtype"]) for w in weights}
    assert {"float16", "uint8", "uint16"} <= set(stored.values())
    assert {q for name, q in stored.items() if "/conv_" in name} == {"float16"}


def test_graph_model_every_default_form_comes_back_verified_in_tfjs(tfjs_ops, tmp_path):
    _, graph, _ = tfjs_ops
    m = convert("tfjs_graph_model", graph / "model.json", tmp_path / "out", "--to", "tflite")
    info = m["steps"][0]["info"]
    assert set(info["split"]) == BY_DEFAULT - {"BiasAdd"}  # the converter's BiasAdd is inside the fused ops here
    assert not set(info["ops"]) & (set(TABLE["fused"]) | {"Prelu", "BiasAdd"}) and info["dequantized"] == {}
    v = verified_in(m, "tf2", reference_stack="tfjs")
    assert v["mode"] == "none" and len(v["outputs"]) == 4
    ids = next(s for s in v["inputs"]["specs"] if s["name"] == "ids")
    assert ids["dtype"] == "int32" and ids["int_range"] == [0, 7] and ids["shape"] == [1, 4]  # the Embedding's size


def test_graph_model_quantized_weights_come_back_as_tfjs_dequantizes_them(tfjs_ops, tmp_path):
    """float16, uint8 and uint16 weights: the SavedModel's constants are exactly the TF.js runtime's, so the TFLite
    model matches the TF.js model to float32 noise, far inside one quantization step. The graph also holds
    _FusedMatMul with Sigmoid, as the converter writes it where TensorFlow's oneDNN rewrites are on."""
    _, _, mixed = tfjs_ops
    model = tmp_path / "graph"
    shutil.copytree(mixed, model)
    fold_into_matmul(model / "model.json", "Sigmoid")
    m = convert("tfjs_graph_model", model / "model.json", tmp_path / "out", "--to", "tflite")
    info = m["steps"][0]["info"]
    assert info["split"]["_FusedMatMul[BiasAdd,Sigmoid]"] == 1
    assert set(info["dequantized"]) == {"float16", "uint8", "uint16"}
    v = verified_in(m, "tf2", reference_stack="tfjs")
    assert v["mode"] == "none" and v["tolerance"] == 1e-4
    assert max(o["max_rel_err"] for o in v["outputs"]) < 1e-5


def test_graph_model_fused_tanh_tfjs_cannot_run_comes_back_as_the_keras_model(tfjs_ops, tmp_path):
    """_FusedMatMul with Tanh (oneDNN hosts) has no TF.js result to compare with (TF.js has no fused tanh), so the
    TFLite model is checked against the Keras model the graph came from."""
    h5, graph, _ = tfjs_ops
    model = tmp_path / "graph"
    shutil.copytree(graph, model)
    fold_into_matmul(model / "model.json", "Tanh")
    m = convert("tfjs_graph_model", model / "model.json", tmp_path / "out", "--to", "tflite", "--no-verify")
    assert m["steps"][0]["info"]["split"]["_FusedMatMul[BiasAdd,Tanh]"] == 1
    proc = cli("verify", "keras", h5, tmp_path / "out" / "model.tflite")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "verified on 24 inputs" in proc.stdout and "mode none" in proc.stdout


def test_graph_model_form_the_step_cannot_split_is_refused_in_one_line(tfjs_ops, tmp_path):
    _, graph, _ = tfjs_ops
    model = tmp_path / "graph"
    shutil.copytree(graph, model)
    doc = json.loads((model / "model.json").read_text())
    node = next(n for n in doc["modelTopology"]["node"]
                if n["op"] == "_FusedConv2D" and fused_ops(n) == ["BiasAdd", "Relu"])
    node["attr"]["fused_ops"]["list"]["s"][0] = base64.b64encode(b"FusedBatchNorm").decode()
    (model / "model.json").write_text(json.dumps(doc))
    proc = cli("convert", "tfjs_graph_model", model / "model.json", tmp_path / "out")
    refused(proc, tmp_path, f"model.json: node '{node['name']}' is _FusedConv2D[FusedBatchNorm,Relu]: the TF.js "
            "runtime refuses a fused convolution with FusedBatchNorm")
