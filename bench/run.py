"""Measure conversion times against bench/targets.json; write bench/results.json and bench/results.md.

    python bench/run.py [--repeat N]
Uses the real CLI on generated models; images must be built (`make images`)."""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def orch(*args):
    proc = subprocess.run([sys.executable, "-m", "orchestrator", *map(str, args)], capture_output=True, text=True,
                          env=dict(os.environ, ORCHESTRATOR_NO_CACHE="1"),  # real conversions, never cache hits
                          cwd=HERE.parent)
    if proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(map(str, args))} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return proc


def cases(models):
    keras, ssd_f, ssd_q = models["keras"], models["ssd_float"], models["ssd_quant"]
    return {
        "keras_float": ["keras", keras / "model.h5"],
        "keras_int8": ["keras", keras / "model.h5", "--quantize", "int8", "--calibration", keras / "calibration.npy"],
        "ssd_float": ["ssd", ssd_f / "ssd_model"],
        "ssd_uint8": ["ssd", ssd_q / "ssd_model", "--quantize", "uint8"],
        "ssd_mlir": ["ssd", ssd_f / "ssd_model", "--converter", "mlir"],
        "pytorch_float": ["pytorch", models["pytorch"] / "model.pt", "--input-shape", "1,3,32,32"],
        "pytorch_int8_full": ["pytorch", models["pytorch"] / "model.pt", "--input-shape", "1,3,32,32", "--quantize",
                              "int8-full", "--calibration", models["pytorch"] / "calibration.npy"],
        # the same ExportedProgram by each PyTorch converter, and by both (--converter auto)
        "pytorch_pt2_onnx2tf": ["pytorch", models["pytorch"] / "model.pt2", "--input-shape", "1,3,32,32"],
        "pytorch_pt2_litert": ["pytorch", models["pytorch"] / "model.pt2", "--input-shape", "1,3,32,32",
                               "--converter", "litert-torch"],
        "pytorch_pt2_auto": ["pytorch", models["pytorch"] / "model.pt2", "--input-shape", "1,3,32,32",
                             "--converter", "auto"],
        "darknet_float": ["darknet", models["darknet"] / "model.cfg", "--weights", models["darknet"] / "model.weights"],
        "jax_tfjs": ["jax", f"{models['jax'] / 'module.py'}:build", "--to", "tfjs_graph_model", "--input-signature",
                     "b,4:float32"],
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--only", help="comma list of cases to run (default: all)")
    args = p.parse_args()
    targets = {k: v for k, v in json.loads((HERE / "targets.json").read_text()).items() if not k.startswith("_")}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        orch("sample", "keras", tmp / "keras")
        orch("sample", "ssd", tmp / "ssd_float")
        orch("sample", "ssd", tmp / "ssd_quant", "--kind", "quant")
        orch("sample", "pytorch", tmp / "pytorch", "--kind", "resnet")
        orch("sample", "darknet", tmp / "darknet", "--kind", "yolov4-tiny")
        orch("sample", "jax", tmp / "jax", "--kind", "dense")
        models = {"keras": tmp / "keras", "ssd_float": tmp / "ssd_float", "ssd_quant": tmp / "ssd_quant",
                  "pytorch": tmp / "pytorch", "darknet": tmp / "darknet", "jax": tmp / "jax"}
        only = set(args.only.split(",")) if args.only else None
        previous = HERE / "results.json"
        # a partial run (--only) keeps the other cases' last results
        results = json.loads(previous.read_text())["results"] if only and previous.exists() else {}
        for name, argv in cases(models).items():
            if only and name not in only:
                continue
            walls, convert, verify = [], [], []
            for i in range(args.repeat):
                out = tmp / f"{name}-{i}"
                start = time.monotonic()
                orch("convert", *argv[:2], out, *argv[2:], "--quiet")
                walls.append(time.monotonic() - start)
                m = json.loads((out / "manifest.json").read_text())
                convert.append(m["timings"]["convert_seconds"])
                verify.append(m["verification"].get("seconds", 0.0))
            results[name] = {"wall_seconds": round(statistics.median(walls), 2),
                             "convert_seconds": round(statistics.median(convert), 2),
                             "verify_seconds": round(statistics.median(verify), 2),
                             "target_seconds": targets.get(name), "runs": args.repeat}
            results[name]["met"] = targets.get(name) is None or results[name]["wall_seconds"] <= targets[name]
    doc = {"host": {"machine": platform.machine(), "python": platform.python_version(),
                    "cpus": __import__("os").cpu_count()},
           "date": time.strftime("%Y-%m-%d"), "results": results}
    (HERE / "results.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = ["| case | wall s (median) | convert s | verify s | target s | met |", "|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['wall_seconds']} | {r['convert_seconds']} | {r['verify_seconds']} | "
                     f"{r['target_seconds']} | {'yes' if r['met'] else 'NO'} |")
    table = "\n".join(lines)
    (HERE / "results.md").write_text(f"# Conversion times ({doc['date']}, {doc['host']['cpus']} CPUs)\n\n{table}\n")
    print(table)
    return 0 if all(r["met"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
