"""See what came out (issue 16): a conversion with FROM detected, its report.html checked against its manifest and
rendered in headless Chromium (no console error, no request leaving the page, a screenshot kept), and `inspect`
on every sample kind, each in the stack that reads it."""

import html.parser
import json
import os
import shutil
import socket
import subprocess
import threading
import urllib.parse
from pathlib import Path

import pytest

from clihelp import REPORT_ON, cli, cli_env, last_line, make_samples, manifest
from test_e2e_verify import tamper

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(os.environ.get("ORCHESTRATOR_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "artifacts"))


def chromium():
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("chromium is not installed (make test installs it: scripts/test-tools.sh)")
        pytest.skip("chromium is not installed (scripts/test-tools.sh)")
    return found


class Tables(html.parser.HTMLParser):
    """Every <table id=...> as rows of cell texts, every <svg> start, and every URL-bearing attribute."""

    def __init__(self):
        super().__init__()
        self.tables, self.svgs, self.urls, self._table, self._row, self._cell = {}, 0, [], None, None, None
        self.details = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for name in ("src", "href", "action", "data", "poster"):
            if attrs.get(name) and not attrs[name].startswith("#"):
                self.urls.append(attrs[name])
        if tag == "table":
            self._table = self.tables.setdefault(attrs.get("id", f"t{len(self.tables)}"), [])
        elif tag == "tr" and self._table is not None:
            self._row = []
            self._table.append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "svg":
            self.svgs += 1
        elif tag == "details":
            self.details += 1

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def parsed(text):
    p = Tables()
    p.feed(text)
    return p


class Listener:
    """A TCP listener Chromium is told to use as its proxy: any request the page makes, of any scheme Chromium
    proxies, arrives here; its first line is kept (e.g. "CONNECT host:443 HTTP/1.1")."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.5)
        self.port, self.requests, self._stop = self.sock.getsockname()[1], [], False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            conn.settimeout(2)
            try:
                self.requests.append(conn.recv(4096).split(b"\r\n", 1)[0].decode("latin-1"))
            except OSError:
                self.requests.append("(a connection that sent nothing)")
            conn.close()

    def close(self):
        self._stop = True
        self.thread.join()
        self.sock.close()


def render(page, tmp_path, screenshot):
    """(the DOM Chromium built, its stderr): the page loaded headless, with a screenshot."""
    browser = chromium()
    listener = Listener()
    # the browser's own traffic (updates, safe browsing, metrics) off: what reaches the proxy comes from the page
    base = [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-default-apps", "--disable-domain-reliability", "--disable-client-side-phishing-detection",
            "--no-pings", "--metrics-recording-only",
            f"--user-data-dir={tmp_path / 'chromium'}", f"--proxy-server=127.0.0.1:{listener.port}",
            "--proxy-bypass-list=<-loopback>", "--enable-logging=stderr", "--v=0", "--window-size=1280,2400"]
    try:
        dom = subprocess.run(base + ["--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
        shot = subprocess.run(base + [f"--screenshot={screenshot}", page.as_uri()], capture_output=True, text=True,
                              timeout=120)
    finally:
        listener.close()
    assert dom.returncode == 0 and shot.returncode == 0, dom.stderr[-2000:] + shot.stderr[-2000:]
    return dom.stdout, dom.stderr + shot.stderr, listener.requests


@pytest.fixture(scope="module")
def keras_cnn(stack_images, tmp_path_factory):
    return make_samples(tmp_path_factory.mktemp("report-samples"), "keras", ("cnn",))["cnn"]


@pytest.fixture(scope="module")
def converted(keras_cnn, tmp_path_factory):
    """A Keras sample converted with no FROM, to int8: the format detected, a quantized result to report."""
    out = tmp_path_factory.mktemp("report") / "int8"
    proc = cli("convert", keras_cnn / "model.h5", out, "--quantize", "int8", "--calibration",
               keras_cnn / "calibration.npy", env=cli_env(**REPORT_ON))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def test_from_is_detected_and_said(converted):
    out, proc = converted
    m = manifest(out)
    assert "detected keras:" in proc.stderr and "is an HDF5 file" in proc.stderr
    assert m["route"]["from"] == "keras" and m["input"]["detected"].startswith("an HDF5 file")


def test_the_report_holds_the_manifests_values(converted):
    out, _ = converted
    m = manifest(out)
    page = parsed((out / "report.html").read_text())
    assert m["report"] == "report.html" and page.urls == []  # nothing the page would fetch or link to
    steps = page.tables["steps"][1:]
    assert [row[1] for row in steps] == [s["name"] for s in m["steps"]]
    assert [float(row[5]) for row in steps] == [s["seconds"] for s in m["steps"]]
    verification = page.tables["verification"][1:]
    outs = m["verification"]["outputs"]
    assert [row[0] for row in verification] == [o["name"] for o in outs]
    assert [float(row[2]) for row in verification] == pytest.approx([o["max_abs_err"] for o in outs], rel=1e-2)
    assert all(row[5] == ("pass" if o["passed"] else "FAIL") for row, o in zip(verification, outs))
    assert all(o["error_histogram"]["counts"] and sum(o["error_histogram"]["counts"]) > 0 for o in outs)
    facts = m["model"]
    assert facts["format"] == "tflite" and facts["read_in"]["stack"] == "tf2"
    inputs = page.tables["inputs"][1:]
    assert [row[0] for row in inputs] == [t["name"] for t in facts["inputs"]]
    assert all(row[2] == t["dtype"] for row, t in zip(inputs, facts["inputs"]))
    # int8 inputs and outputs (the TFLite route's default): their scale and zero point are in the table
    assert all(t["dtype"] == "int8" and t["scale"] > 0 for t in facts["inputs"] + facts["outputs"])
    assert [float(row[3]) for row in inputs] == pytest.approx([t["scale"] for t in facts["inputs"]], rel=1e-5)
    assert [int(row[4]) for row in inputs] == [t["zero_point"] for t in facts["inputs"]]
    ops = {(row[0], row[1]): int(row[2]) for row in page.tables["ops"][1:] if row[1] != "none"}
    assert ops == {(kind, name): n for kind, names in facts["op_kinds"].items() for name, n in names.items()}
    assert "CONV_2D" in facts["op_kinds"]["builtin"] and not facts["op_kinds"]["flex"]
    latency = page.tables["latency"][1:]
    assert [float(row[1]) for row in latency] == [facts["latency"][k]["median_ms"] for k in ("threads_1",
                                                                                               "threads_all")]
    assert all(facts["latency"][k]["p90_ms"] >= facts["latency"][k]["median_ms"] > 0 for k in ("threads_1",
                                                                                                 "threads_all"))
    # the per-layer table: the int8 model's activations against its float twin's, worst first
    layers = facts["layer_errors"]
    assert 0 < layers["compared"] <= layers["activations"] and layers["layers"]
    rel = [row["rel_err"] for row in layers["layers"]]
    assert rel == sorted(rel, reverse=True) and rel[0] > 0
    rows = page.tables["layer_errors"][1:]
    assert [row[0] for row in rows] == [row["tensor"] for row in layers["layers"]]
    assert [float(row[4]) for row in rows] == pytest.approx(rel, rel=1e-2)
    assert not (out / "float_reference.tflite").exists() and "float_reference.tflite" not in m["artifacts"]
    sizes = {row[0]: int(row[1]) for row in page.tables["sizes"][1:]}
    assert sizes["model.tflite"] == (out / "model.tflite").stat().st_size == facts["size_bytes"]
    # one picture per page of ops, every op on one page
    assert facts["graph_pages"] and sum(p["ops"] for p in facts["graph_pages"]) == sum(facts["ops"].values())
    assert page.details == len(facts["graph_pages"])
    assert page.svgs == len(facts["graph_pages"]) + len(outs)  # the graph pages and one histogram per output


def hosts(requests):
    """The hosts of proxied request lines ("CONNECT h:443 HTTP/1.1", "GET http://h/p HTTP/1.1")."""
    found = set()
    for line in requests:
        parts = line.split()
        if len(parts) >= 2:
            target = parts[1]
            found.add(urllib.parse.urlsplit(target).hostname if "://" in target else target.rsplit(":", 1)[0])
    return found


def test_the_report_renders_in_chromium_with_no_error_and_no_request(converted, tmp_path):
    out, _ = converted
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # the browser's own traffic, from a blank page; and a page that fetches, which the proxy must see
    blank, canary = tmp_path / "blank.html", tmp_path / "canary.html"
    blank.write_text("<!DOCTYPE html><title>blank</title>")
    canary.write_text('<!DOCTYPE html><title>canary</title><img src="http://canary.invalid/pixel.png">')
    background = hosts(render(blank, tmp_path / "b", tmp_path / "blank.png")[2])
    assert "canary.invalid" in hosts(render(canary, tmp_path / "c", tmp_path / "canary.png")[2])
    screenshot = ARTIFACTS / "report-keras-int8.png"
    dom, log, requests = render(out / "report.html", tmp_path / "r", screenshot)
    background |= hosts(render(blank, tmp_path / "b2", tmp_path / "blank2.png")[2])  # before and after
    page = parsed(dom)
    assert "steps" in page.tables and "latency" in page.tables and page.svgs >= 2
    assert hosts(requests) - background == set(), f"the page made requests: {requests}"
    console = [ln for ln in log.splitlines() if "CONSOLE" in ln or "Refused to" in ln or "Failed to load" in ln]
    assert console == [], console
    assert screenshot.is_file() and screenshot.stat().st_size > 10_000


# -- inspect -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def zoo(stack_images, keras_cnn, converted, tmp_path_factory):
    """{case: (path, format, stack)}: one model of every kind inspect reads, made by the samples and the CLI."""
    root = tmp_path_factory.mktemp("zoo")
    torch = make_samples(root / "torch", "pytorch", ("cnn",))["cnn"]
    onnx = make_samples(root / "onnx", "onnx", ("cnn",))["cnn"]
    darknet = make_samples(root / "darknet", "darknet", ("yolov3-tiny",))["yolov3-tiny"]
    keras3 = make_samples(root / "keras3", "keras", ("keras3",))["keras3"]
    tfsm = make_samples(root / "sm", "tf_saved_model", ("multi",))["multi"]
    frozen = make_samples(root / "frozen", "tf_frozen_model", ("multi",))["multi"]
    ksm = make_samples(root / "ksm", "keras_saved_model", ("cnn",))["cnn"]
    for to in ("tfjs_layers_model", "tfjs_graph_model"):
        proc = cli("convert", "keras", keras_cnn / "model.h5", root / to, "--to", to, "--no-verify", "--no-report")
        assert proc.returncode == 0, proc.stderr[-2000:]
    out, _ = converted
    return {
        "keras-h5": (keras_cnn / "model.h5", "keras", "tf2"),
        "keras3-archive": (keras3 / "model.keras", "keras", "keras3"),
        "keras_saved_model": (ksm / "keras_saved_model", "keras_saved_model", "tf2"),
        "tf_saved_model": (tfsm / "saved_model", "tf_saved_model", "tf2"),
        "tf_frozen_model": (frozen / "frozen_model.pb", "tf_frozen_model", "tf2"),
        "tflite-int8": (out / "model.tflite", "tflite", "tf2"),
        "tfjs_layers_model": (root / "tfjs_layers_model" / "model.json", "tfjs_layers_model", "tf2"),
        "tfjs_graph_model": (root / "tfjs_graph_model" / "model.json", "tfjs_graph_model", "tf2"),
        "onnx": (onnx / "model.onnx", "onnx", "onnx2tf"),
        "torchscript": (torch / "model.pt", "pytorch", "torch"),
        "exported_program": (torch / "model.pt2", "pytorch", "torch"),
        "darknet": (darknet / "model.cfg", "darknet", "tf2"),
    }


CASES = ("keras-h5", "keras3-archive", "keras_saved_model", "tf_saved_model", "tf_frozen_model", "tflite-int8",
         "tfjs_layers_model", "tfjs_graph_model", "onnx", "torchscript", "exported_program", "darknet")


@pytest.mark.parametrize("case", CASES)
def test_inspect_reads_every_kind_in_its_stack(zoo, case):
    path, fmt, stack = zoo[case]
    proc = cli("inspect", path, "--json", "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = json.loads(proc.stdout)
    assert found["format"] == fmt and found["read_in"].startswith(f"orchestrator/{stack}:")
    assert found["detected"] and found["size_bytes"] > 0 and sum(found["ops"].values()) > 0
    assert found["inputs"] and found["outputs"] and all(t["name"] for t in found["inputs"])
    if fmt != "darknet":
        assert found["parameters"] > 0
    text = cli("inspect", path, "--quiet")
    assert text.returncode == 0 and text.stdout.startswith(f"{path}: {fmt},") and "inputs:" in text.stdout


def test_inspect_agrees_with_the_models_own_facts(zoo, converted):
    """The same .tflite read by inspect (tf2) and by the report (its verification stack) gives the same facts; the
    H5 and its TF.js layers model hold the same parameters."""
    out, _ = converted
    facts = manifest(out)["model"]
    found = json.loads(cli("inspect", out / "model.tflite", "--json", "--quiet").stdout)
    for key in ("inputs", "outputs", "ops", "op_kinds", "parameters", "size_bytes"):
        assert found[key] == facts[key], key
    assert all(t["scale"] > 0 and t["dtype"] == "int8" for t in [*found["inputs"], *found["outputs"]])
    h5 = json.loads(cli("inspect", zoo["keras-h5"][0], "--json", "--quiet").stdout)
    layers = json.loads(cli("inspect", zoo["tfjs_layers_model"][0], "--json", "--quiet").stdout)
    assert h5["parameters"] == layers["parameters"] and h5["ops"] == layers["ops"]


def test_inspect_refuses_a_non_model_in_one_line(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not a model")
    proc = cli("inspect", bad)
    assert proc.returncode == 2 and last_line(proc) == (f"orchestrator: error: {bad}: is no model format this tool "
                                                        "recognises (keras, keras_saved_model, tf_saved_model, "
                                                        "tf_frozen_model, tfjs_layers_model, tfjs_graph_model, "
                                                        "tflite, onnx, pytorch, darknet, jax, ssd); name its format "
                                                        "(FROM, or inspect --format) if it is one of them")


# -- compare -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def float_and_tampered(engine, keras_cnn, tmp_path_factory):
    root = tmp_path_factory.mktemp("compare")
    proc = cli("convert", "keras", keras_cnn / "model.h5", root / "float", "--no-verify", "--no-report")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return root / "float" / "model.tflite", tamper(engine, root / "float" / "model.tflite", root / "bad",
                                                   "conv_weight")


def test_compare_a_source_and_its_conversion(keras_cnn, float_and_tampered):
    good, _ = float_and_tampered
    proc = cli("compare", keras_cnn / "model.h5", good, "--json", "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = json.loads(proc.stdout)
    assert found["passed"] and found["a"]["format"] == "keras" and found["b"]["format"] == "tflite"
    assert found["b"]["facts"]["latency"]["threads_1"]["median_ms"] > 0
    outputs = found["verification"]["outputs"]
    assert [o["name"] for o in outputs] == [t["name"] for t in found["a"]["facts"]["outputs"]] == ["probs"]
    assert all(o["passed"] and o["max_abs_err"] < 1e-4 for o in outputs)


def test_compare_catches_a_perturbed_model(float_and_tampered):
    good, bad = float_and_tampered
    proc = cli("compare", good, bad, "--quiet")
    assert proc.returncode == 4, proc.stderr[-2000:]
    assert "DIFFERS" in proc.stdout and "they differ" in proc.stdout and "ops: the same" in proc.stdout
    assert last_line(proc).startswith("orchestrator: error: verification failed: output ")


def test_compare_shows_what_quantization_moved(converted, keras_cnn, float_and_tampered):
    good, _ = float_and_tampered
    int8, _ = converted
    proc = cli("compare", good, int8 / "model.tflite", "--quantize", "int8", "--sample_input",
               keras_cnn / "calibration.npy", "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    lines = [ln.strip() for ln in proc.stdout.splitlines()]
    # int8 inputs and outputs (the route's default), the same ops, a size that moved
    assert "inputs: image float32 -> int8" in lines and "outputs: probs float32 -> int8" in lines
    assert "ops: the same" in lines and any(ln.startswith("size (bytes)") and ln.endswith("(moved)") for ln in lines)


# -- check ---------------------------------------------------------------------------------------------------
def check_flags(zoo, case):
    path, fmt, _ = zoo[case]
    if fmt == "tf_frozen_model":
        info = json.loads((path.parent / "sample.json").read_text())
        return ["--input_arrays", ",".join(info["input_arrays"]), "--output_arrays", ",".join(info["output_arrays"]),
                "--input_shapes", info["input_shapes"]]
    if fmt == "pytorch":
        return ["--input_shape", "1,3,32,32"]
    if fmt == "darknet":
        return ["--weights", path.parent / "model.weights"]
    return []


@pytest.mark.parametrize("case", [c for c in CASES if c != "tflite-int8"])
def test_check_plans_every_kind_and_passes_a_convertible_model(zoo, case):
    path, fmt, _ = zoo[case]
    proc = cli("check", path, *check_flags(zoo, case), "--json", "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    found = json.loads(proc.stdout)
    assert found["from"] == fmt and found["to"] == "tflite" and found["route"] and found["passed"]
    assert found["problems"] == []
    if fmt in ("keras", "keras_saved_model", "tf_saved_model", "tf_frozen_model", "onnx") and case != "keras3-archive":
        assert sum(found["ops"].values()) > 0  # the op pre-flight ran in the stack reading it
    if fmt == "onnx":
        assert any("--keep_nchw" in a for a in found["advice"])
    if fmt == "pytorch":
        assert any("--converter litert-torch" in a for a in found["advice"])


def test_check_refuses_a_route_missing_its_required_flag(zoo):
    proc = cli("check", zoo["torchscript"][0])
    assert proc.returncode == 7 and "--input_shape" in last_line(proc)


@pytest.fixture(scope="module")
def flex_model(stack_images, tmp_path_factory):
    return make_samples(tmp_path_factory.mktemp("flex"), "tf_saved_model", ("flex",))["flex"] / "saved_model"


def test_check_flags_a_flex_op_and_the_flag_it_names_converts_it(flex_model, tmp_path):
    proc = cli("check", flex_model, "--quiet")
    assert proc.returncode == 7, proc.stdout + proc.stderr
    assert "problem: no TFLite builtin for MatrixInverse: they need Flex (TF Select) ops" in proc.stdout
    assert last_line(proc).startswith("orchestrator: error: check: no TFLite builtin for MatrixInverse") and \
        "--allow_flex_ops" in last_line(proc)
    proc = cli("check", flex_model, "--allow_flex_ops", "--quiet")
    assert proc.returncode == 0 and "check passed" in proc.stdout
    proc = cli("convert", flex_model, tmp_path / "out", "--allow_flex_ops", env=cli_env(**REPORT_ON))
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = manifest(tmp_path / "out")
    assert m["verification"]["passed"] and m["model"]["op_kinds"]["flex"] == {"FlexMatrixInverse": 1}
    page = parsed((tmp_path / "out" / "report.html").read_text())
    assert ["flex", "FlexMatrixInverse", "1"] in page.tables["ops"]


# -- the report from every stack that writes one -------------------------------------------------------------
@pytest.mark.parametrize("case, stack, fmt", [("onnx", "onnx2tf", "tflite"), ("litert", "litert_torch", "tflite"),
                                              ("tfjs", "tf2", "tfjs_layers_model")])
def test_every_stack_that_reads_a_result_writes_its_report(zoo, keras_cnn, tmp_path, case, stack, fmt):
    args = {"onnx": [zoo["onnx"][0]],
            "litert": [zoo["exported_program"][0], "--converter", "litert-torch", "--input_shape", "1,3,32,32"],
            "tfjs": [keras_cnn / "model.h5", "--to", "tfjs_layers_model"]}[case]
    proc = cli("convert", args[0], tmp_path / "out", *args[1:], env=cli_env(**REPORT_ON))
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = manifest(tmp_path / "out")
    facts = m["model"]
    assert facts["format"] == fmt and facts["read_in"]["stack"] == stack and "error" not in facts
    page = parsed((tmp_path / "out" / "report.html").read_text())
    assert [row[1] for row in page.tables["steps"][1:]] == [s["name"] for s in m["steps"]]
    assert [row[0] for row in page.tables["outputs"][1:]] == [t["name"] for t in facts["outputs"]]
    if fmt == "tflite":  # the interpreter of the stack that verified it timed it, and the graph was drawn
        assert facts["latency"]["threads_1"]["median_ms"] > 0 and page.details == len(facts["graph_pages"]) > 0
    else:
        assert "latency" not in page.tables and facts["parameters"] > 0
