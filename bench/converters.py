"""PyTorch -> TFLite by each converter, side by side, for every PyTorch sample kind: time, max error, TRANSPOSE ops
and size, from the real CLI (`--converter onnx2tf`, `--converter litert-torch`); writes bench/converters.json and
bench/converters.md.

    python bench/converters.py [--kinds cnn,resnet] [--converters onnx2tf,litert-torch]
Images must be built (`make images`). A conversion that fails is recorded with its one-line error."""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from orchestrator.samples import TORCH_KINDS  # noqa: E402

CONVERTERS = ("onnx2tf", "litert-torch")


def orch(*args):
    return subprocess.run([sys.executable, "-m", "orchestrator", *map(str, args)], capture_output=True, text=True,
                          env=dict(os.environ, ORCHESTRATOR_NO_CACHE="1"),  # real conversions, never cache hits
                          cwd=HERE.parent)


def measure(sample, out, converter):
    shape = json.loads((sample / "sample.json").read_text())["input_shape"]
    start = time.monotonic()
    proc = orch("convert", "pytorch", sample / "model.pt2", out, "--input-shape", shape, "--converter", converter,
                "--quiet")
    row = {"wall_seconds": round(time.monotonic() - start, 2)}
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        return dict(row, passed=False, error=lines[-1] if lines else f"exit {proc.returncode}")
    m = json.loads((out / "manifest.json").read_text())
    v = m["verification"]
    return dict(row, passed=bool(v.get("passed")), convert_seconds=m["timings"]["convert_seconds"],
                max_rel_err=max(o.get("max_rel_err", 0.0) for o in v["outputs"]),
                max_abs_err=max(o.get("max_abs_err", 0.0) for o in v["outputs"]),
                transpose_ops=v.get("transpose_ops"), size_bytes=(out / "model.tflite").stat().st_size)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--kinds", default=",".join(TORCH_KINDS))
    p.add_argument("--converters", default=",".join(CONVERTERS))
    args = p.parse_args()
    previous = HERE / "converters.json"
    # a run over some kinds keeps the other kinds' last results
    partial = set(args.kinds.split(",")) != set(TORCH_KINDS) and previous.exists()
    results = json.loads(previous.read_text())["results"] if partial else {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for kind in args.kinds.split(","):
            sample = tmp / kind
            made = orch("sample", "pytorch", sample, "--kind", kind)
            if made.returncode != 0:
                raise SystemExit(f"converters: sample {kind} failed: {made.stderr.strip().splitlines()[-1:]}")
            results[kind] = dict(results.get(kind, {}), **{c: measure(sample, tmp / f"{kind}-{c}", c)
                                                            for c in args.converters.split(",")})
    doc = {"host": {"machine": platform.machine(), "cpus": __import__("os").cpu_count()},
           "date": time.strftime("%Y-%m-%d"), "input": "each sample's ExportedProgram (model.pt2), which both converters take",
           "results": results}
    (HERE / "converters.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = ["| sample | converter | passed | wall s | convert s | max rel err | max abs err | TRANSPOSE | size KB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for kind, rows in results.items():
        for converter, r in rows.items():
            if not r["passed"] and "error" in r:
                lines.append(f"| {kind} | {converter} | no: {r['error'][:90]} | {r['wall_seconds']} | | | | | |")
                continue
            lines.append(f"| {kind} | {converter} | {'yes' if r['passed'] else 'no'} | {r['wall_seconds']} | "
                         f"{r['convert_seconds']} | {r['max_rel_err']:.2g} | {r['max_abs_err']:.2g} | "
                         f"{r['transpose_ops']} | {r['size_bytes'] / 1024:.0f} |")
    table = "\n".join(lines)
    (HERE / "converters.md").write_text(f"# PyTorch -> TFLite by converter ({doc['date']}, {doc['host']['cpus']} "
                                        f"CPUs)\n\n{table}\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
