"""The conversion report's facts about a .tflite, in the stack that ran it for verification:
model_info's facts, a latency benchmark in the interpreter, and the op graph as Graphviz DOT pages (rendered to
SVG by the stack that has Graphviz: a steps/render_graph.py).

    report_model.py --input MODEL.tflite --out DIR [--runs N] [--page_ops N] [--float_reference FLOAT.tflite]
Writes graph-K.dot into DIR and step.json (info: model_info's dict, "latency", "graph_pages", and with a float
reference "layer_errors": the quantized model's activations against the float model's, worst first).
"""

import argparse
import os
import time

import numpy as np

import model_info
from step_sdk import first_line, step_done

RUNS, WARMUP = 20, 3
PAGE_OPS = 48  # operators per picture: a MobileNet-sized graph is a few readable pages, not one unreadable one


def _feed(detail, rng):
    dtype = np.dtype(detail["dtype"])
    shape = [d if d > 0 else 1 for d in detail["shape"]]
    if dtype.kind == "f":
        return rng.uniform(-1, 1, shape).astype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(max(info.min, -128), min(info.max, 127) + 1, shape).astype(dtype)
    return np.zeros(shape, dtype)


def latency(path, runs):
    """{"threads_1": {...}, "threads_all": {...}}: median and p90 milliseconds of `runs` invocations after a warm-up,
    with one thread and with every core; or {"error": ...} when the interpreter cannot run it here."""
    import tflite_runtime

    api, name = tflite_runtime.interpreter_module()
    rng = np.random.default_rng(0)
    found = {"interpreter": name, "runs": runs, "warmup": WARMUP, "cores": os.cpu_count()}
    try:
        if tflite_runtime.op_set(tflite_runtime.op_counts(path))["flex"]:
            tflite_runtime.flex_delegate()
        for key, threads in (("threads_1", 1), ("threads_all", os.cpu_count())):
            interp = api.Interpreter(model_path=path, num_threads=threads)
            interp.allocate_tensors()
            for d in interp.get_input_details():
                interp.set_tensor(d["index"], _feed(d, rng))
            times = []
            for i in range(WARMUP + runs):
                start = time.perf_counter()
                interp.invoke()
                if i >= WARMUP:
                    times.append((time.perf_counter() - start) * 1000.0)
            found[key] = {"threads": threads, "median_ms": round(float(np.median(times)), 3),
                          "p90_ms": round(float(np.percentile(times, 90)), 3)}
    except Exception as exc:  # an op this interpreter lacks, e.g. a custom op the app registers
        found["error"] = first_line(exc)
    return found


def layer_errors(path, float_path, top=12):
    """The quantized model's activations against its float twin's, on one seeded input, where tensor names match:
    {"compared", "activations", "layers": the `top` worst [{tensor, shape, dtype, max_abs_err, rel_err}]}, rel_err
    being max|q - f| / max|f| with q dequantized. Weights (constant tensors) are left out."""
    import tflite_runtime

    api, _ = tflite_runtime.interpreter_module()
    graph = model_info.TFLiteGraph(path)
    quant = api.Interpreter(model_path=path, experimental_preserve_all_tensors=True)
    ref = api.Interpreter(model_path=float_path, experimental_preserve_all_tensors=True)
    quant.allocate_tensors()
    ref.allocate_tensors()
    rng = np.random.default_rng(0)
    for q, f in zip(quant.get_input_details(), ref.get_input_details()):
        x = _feed(f, rng)
        ref.set_tensor(f["index"], x)
        quant.set_tensor(q["index"], tflite_runtime.quantize(x, q) if tflite_runtime.quantized(q) else
                         x.astype(q["dtype"]))
    quant.invoke()
    ref.invoke()
    floats = {d["name"]: d for d in ref.get_tensor_details()}
    rows, activations = [], 0
    for d in quant.get_tensor_details():
        if d["index"] >= len(graph.tensors) or graph.is_constant(d["index"]):
            continue
        activations += 1
        f = floats.get(d["name"])
        if f is None or list(f["shape"]) != list(d["shape"]):
            continue
        try:
            qv, fv = quant.get_tensor(d["index"]), ref.get_tensor(f["index"])
        except ValueError:  # a tensor the interpreter did not keep
            continue
        if np.dtype(fv.dtype).kind != "f" or not fv.size:
            continue
        qv = tflite_runtime.dequantize(qv, d).astype(np.float64) if tflite_runtime.quantized(d) else \
            qv.astype(np.float64)
        scale = float(np.max(np.abs(fv)))
        if scale == 0 or not np.all(np.isfinite(qv)):
            continue
        err = float(np.max(np.abs(qv - fv.astype(np.float64))))
        rows.append({"tensor": d["name"], "shape": [int(v) for v in d["shape"]],
                     "dtype": np.dtype(d["dtype"]).name, "max_abs_err": err, "rel_err": err / scale})
    rows.sort(key=lambda r: -r["rel_err"])
    return {"compared": len(rows), "activations": activations, "layers": rows[:top]}


def _quote(text):
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def graph_pages(graph, out, page_ops):
    """Write graph-K.dot, one per `page_ops` operators in stored (execution) order; return the pages' facts. A
    tensor made on an earlier page enters as a small box naming it; graph inputs and outputs are ellipses."""
    ops = graph.operators
    producer = {t: i for i, op in enumerate(ops) for t in (op.outputs if op.outputs is not None else [])}
    graph_inputs, graph_outputs = set(graph.graph.inputs), set(graph.graph.outputs)
    pages = []
    for page, start in enumerate(range(0, max(len(ops), 1), page_ops), 1):
        chosen = range(start, min(start + page_ops, len(ops)))
        lines = ["digraph page%d {" % page, '  graph [rankdir=TB, fontname="Helvetica", fontsize=10];',
                 '  node [shape=box, style="rounded,filled", fillcolor="#eef3fb", fontname="Helvetica", fontsize=9];',
                 '  edge [color="#667085", arrowsize=0.6];']
        outside = set()
        for i in chosen:
            op = ops[i]
            outs = [graph.tensor_info(t) for t in (op.outputs if op.outputs is not None else []) if t >= 0]
            shape = ("x".join("?" if d is None else str(d) for d in outs[0]["shape"] or []) if outs else "")
            name, kind = graph.codes[op.opcodeIndex]
            color = {"builtin": "#eef3fb", "custom": "#fff4e5", "flex": "#fdecec"}[kind]
            lines.append('  op%d [label=%s, fillcolor="%s", tooltip=%s];' % (
                i, _quote("%s\n%s" % (name, shape)), color, _quote(outs[0]["name"] if outs else name)))
            for t in (op.inputs if op.inputs is not None else []):
                if t < 0:
                    continue
                src = producer.get(t)
                if src is not None and src in chosen:
                    lines.append("  op%d -> op%d;" % (src, i))
                elif t in graph_inputs or src is not None:
                    node = "in%d" % t
                    if node not in outside:
                        outside.add(node)
                        info = graph.tensor_info(t)
                        label = info["name"] + ("" if t in graph_inputs else "\n(page %d)" % (src // page_ops + 1))
                        lines.append('  %s [label=%s, shape=%s, fillcolor="#ffffff"];' % (
                            node, _quote(label), "ellipse" if t in graph_inputs else "note"))
                    lines.append("  %s -> op%d;" % (node, i))
            for t in (op.outputs if op.outputs is not None else []):
                if t in graph_outputs:
                    lines.append('  out%d [label=%s, shape=ellipse, fillcolor="#e9f7ef"];' % (
                        t, _quote(graph.tensor_info(t)["name"])))
                    lines.append("  op%d -> out%d;" % (i, t))
        lines.append("}")
        name = "graph-%d.dot" % page
        with open(os.path.join(out, name), "w") as fh:
            fh.write("\n".join(lines) + "\n")
        pages.append({"file": name, "first_op": start, "ops": len(chosen)})
    return pages


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--input", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--runs", type=int, default=RUNS)
    p.add_argument("--page_ops", type=int, default=PAGE_OPS)
    p.add_argument("--float_reference", help="the same model converted without quantization: per-layer errors")
    args = p.parse_args()
    facts = model_info.tflite(args.input)
    facts["latency"] = latency(args.input, args.runs)
    if args.float_reference:
        try:
            facts["layer_errors"] = layer_errors(args.input, args.float_reference)
        except Exception as exc:  # an interpreter that cannot keep every tensor, an op it lacks
            facts["notes"].append("no per-layer errors: " + first_line(exc))
    facts["graph_pages"] = graph_pages(model_info.TFLiteGraph(args.input), args.out, args.page_ops)
    step_done(args.out, [page["file"] for page in facts["graph_pages"]], **facts)


if __name__ == "__main__":
    main()
