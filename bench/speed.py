"""Issue 14's speed targets, measured side by side in one interleaved run; writes bench/speed.json and .md.

    python bench/speed.py [--repeat 2] [--jobs 6] [--cases keras-small,onnx-mobilenetv2,...]

For each route family (Keras -> TFLite in tf2, ONNX -> TFLite with onnx2tf, PyTorch -> TFLite with LiteRT Torch) on
generated models, small and MobileNetV2-sized (3.5 M parameters), each round measures:
- (a) `orchestrator convert` end to end, with verification and with --no-verify (the cache off; --no-report: the
  report's latency benchmark and picture are not part of converting);
- (b) the same converter call made by hand: `docker run` of one fresh container of the same stack image that imports
  the converter, loads the model and converts it;
- (c) a cache hit: the same conversion again with the cache holding it.
Then a batch of JOBS small conversions, with their reports (each its own quantization, so none is a cache hit) at
-j 1 and -j 2, with the cores each kept busy (/proc/stat): -j 1 already keeps more than one busy, which bounds what
-j 2 can gain.
Images must be built (`make images`). Nothing is timed in the tests; this is where the numbers live."""

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
sys.path.insert(0, str(HERE.parent))

from orchestrator import images  # noqa: E402

MODES = ("none", "float16", "dynamic")
KERAS_DIRECT = ("import tensorflow as tf\n"
                "m = tf.keras.models.load_model('/in/model.h5', compile=False)\n"
                "open('/out/model.tflite', 'wb').write(tf.lite.TFLiteConverter.from_keras_model(m).convert())\n")
ONNX_DIRECT = ("import numpy, onnx2tf, os, shutil\n"  # the API call the step makes, with its base options
               "os.chdir('/tmp')  # onnx2tf downloads its sample images unless they are here: no network, so write them\n"
               "numpy.save('calibration_image_sample_data_20x128x128x3_float32.npy', "
               "numpy.random.default_rng(0).uniform(0, 1, (20, 128, 128, 3)).astype('float32'))\n"
               # a writable copy, as a user's own file is: onnx2tf simplifies the model in place (onnxsim, three
               # times), and on the read-only mount that fails and is skipped, which is not the same conversion
               "shutil.copy('/in/model.onnx', '/tmp/model.onnx')\n"
               "onnx2tf.convert(input_onnx_file_path='/tmp/model.onnx', output_folder_path='/tmp/o', "
               "output_signaturedefs=True, copy_onnx_input_output_names_to_tflite=True, non_verbose=True)\n"
               "shutil.copy('/tmp/o/model_float32.tflite', '/out/model.tflite')\n")
LITERT_DIRECT = ("import torch, litert_torch\n"
                 "m = torch.export.load('/in/model.pt2').module()\n"
                 "litert_torch.convert(m, (torch.rand({shape}),)).export('/out/model.tflite')\n")
# case: (sample format, kind, convert arguments after the model path, model file, stack, direct command)
CASES = {
    "keras-small": ("keras", "cnn", [], "model.h5", "tf2", ["python", "-c", KERAS_DIRECT]),
    "keras-mobilenetv2": ("keras", "mobilenetv2", [], "model.h5", "tf2", ["python", "-c", KERAS_DIRECT]),
    "onnx-small": ("onnx", "cnn", [], "model.onnx", "onnx2tf", ["python", "-c", ONNX_DIRECT]),
    "onnx-mobilenetv2": ("onnx", "mobilenetv2", [], "model.onnx", "onnx2tf", ["python", "-c", ONNX_DIRECT]),
    "pytorch-litert-small": ("pytorch", "cnn", ["--input-shape", "1,3,32,32", "--converter", "litert-torch"],
                             "model.pt2", "litert_torch",
                             ["python", "-c", LITERT_DIRECT.format(shape="1, 3, 32, 32")]),
    "pytorch-litert-mobilenetv2": ("pytorch", "mobilenetv2", ["--input-shape", "1,3,224,224", "--converter",
                                                              "litert-torch"], "model.pt2", "litert_torch",
                                   ["python", "-c", LITERT_DIRECT.format(shape="1, 3, 224, 224")]),
}


def orch(env, *args):
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "orchestrator", *map(str, args)], capture_output=True, text=True,
                          cwd=HERE.parent, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(map(str, args))} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return time.monotonic() - start, proc


def direct(model, stack, command, out):
    """(b): one fresh container of the stack's image, by hand, with the step's hardening."""
    out.mkdir(parents=True)
    start = time.monotonic()
    proc = subprocess.run(["docker", "run", "--rm", "--network", "none", "--read-only", "--tmpfs", "/tmp:exec",
                           "--cap-drop", "ALL", "--user", f"{os.getuid()}:{os.getgid()}", "-e", "HOME=/tmp",
                           "-v", f"{model.parent}:/in:ro", "-v", f"{out}:/out", images.get_stack(stack).tag(),
                           *command], capture_output=True, text=True)
    seconds = time.monotonic() - start
    if proc.returncode != 0 or not (out / "model.tflite").is_file():  # recorded: the route converts what the
        lines = [ln for ln in proc.stderr.splitlines() if "Error" in ln or "ERROR" in ln]  # bare converter cannot
        return {"failed": (lines or proc.stderr.strip().splitlines() or ["no output"])[-1].strip()[:200]}
    return seconds


def cpu_ticks():
    """(busy, total) clock ticks of all cores since boot (/proc/stat): a run's busy cores are d(busy)/d(total) x
    cores. The whole host's: the bench wants a quiet machine anyway."""
    with open("/proc/stat") as fh:
        fields = [int(v) for v in fh.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields) - idle, sum(fields)


def median(values):
    return round(statistics.median(values), 2)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--jobs", type=int, default=6)
    p.add_argument("--cases", default=",".join(CASES))
    args = p.parse_args()
    chosen = args.cases.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = dict(os.environ, ORCHESTRATOR_CACHE_DIR=str(tmp / "cache"), ORCHESTRATOR_NO_CACHE="")
        models, times = {}, {name: {"convert": [], "convert_no_verify": [], "direct": [], "cache_hit": []}
                             for name in chosen}
        for name in chosen:
            fmt, kind, extra, artifact, _, _ = CASES[name]
            folder = tmp / "samples" / f"{fmt}-{kind}"
            if not folder.exists():
                orch(env, "sample", fmt, folder, "--kind", kind)
            models[name] = folder / artifact
            # what the hits read
            orch(env, "convert", fmt, models[name], tmp / f"fill-{name}", *extra, "--no-report", "--quiet")
        for r in range(args.repeat):  # interleaved: every measure of every case, round after round
            for name in chosen:
                fmt, kind, extra, _, stack, command = CASES[name]
                t = times[name]
                t["convert_no_verify"].append(orch(env, "convert", fmt, models[name], tmp / f"nv-{name}-{r}", *extra,
                                                   "--no-verify", "--no-cache", "--no-report", "--quiet")[0])
                t["direct"].append(direct(models[name], stack, command, tmp / f"direct-{name}-{r}"))
                t["convert"].append(orch(env, "convert", fmt, models[name], tmp / f"cv-{name}-{r}", *extra,
                                         "--no-cache", "--no-report", "--quiet")[0])
                seconds, proc = orch(env, "convert", fmt, models[name], tmp / f"hit-{name}-{r}", *extra, "--no-report",
                                     "--quiet")
                if "runs from the cache" not in proc.stdout:
                    raise SystemExit(f"bench: {name}: the repeated conversion was not a cache hit")
                t["cache_hit"].append(seconds)
        throughput = {}
        model = tmp / "samples" / "keras-cnn" / "model.h5"
        if not model.exists():
            orch(env, "sample", "keras", model.parent)
        runs = {1: [], 2: []}
        for r in range(args.repeat):  # interleaved too: -j 1, -j 2, -j 1, -j 2, ...
            for workers in (1, 2):
                folder = tmp / f"batch-j{workers}-{r}"
                folder.mkdir()
                jobs = "".join(f"  - {{name: j{i}, input: {model}, output_dir: out{i}, "
                               f"flags: {{quantize: {MODES[i % len(MODES)]}}}}}\n" for i in range(args.jobs))
                (folder / "jobs.yaml").write_text(f"defaults: {{from: keras}}\njobs:\n{jobs}")
                busy0, total0 = cpu_ticks()
                seconds, _ = orch(dict(env, ORCHESTRATOR_NO_CACHE="1"), "batch", folder / "jobs.yaml", "-j",
                                  workers, "--quiet")
                busy1, total1 = cpu_ticks()
                runs[workers].append((seconds, os.cpu_count() * (busy1 - busy0) / max(1, total1 - total0)))
        for workers, measured in runs.items():
            seconds, busy = statistics.median(m[0] for m in measured), statistics.median(m[1] for m in measured)
            throughput[workers] = {"seconds": round(seconds, 2), "jobs_per_minute": round(args.jobs * 60 / seconds, 2),
                                   "busy_cores": round(busy, 2), "cpu_seconds": round(busy * seconds, 1),
                                   "runs": [round(m[0], 2) for m in measured]}
    cases = {}
    for name in chosen:
        failed = [d["failed"] for d in times[name]["direct"] if isinstance(d, dict)]
        m = {k: median(v) for k, v in times[name].items() if not (k == "direct" and failed)}
        m["runs"] = {k: [round(x, 2) if not isinstance(x, dict) else x for x in v] for k, v in times[name].items()}
        if failed:
            m["direct"], m["direct_failed"] = None, failed[0]
            m["no_verify_minus_direct"] = m["convert_over_direct"] = None
        else:
            m["no_verify_minus_direct"] = round(m["convert_no_verify"] - m["direct"], 2)
            m["convert_over_direct"] = round(m["convert"] / m["direct"], 2)
        m["met"] = {"no_verify_within_1s_of_direct": None if failed else m["no_verify_minus_direct"] <= 1.0,
                    "convert_at_most_1.5x_direct": None if failed else m["convert_over_direct"] <= 1.5,
                    "cache_hit_at_most_1.5s": m["cache_hit"] <= 1.5}
        cases[name] = m
    speedup = round(throughput[2]["jobs_per_minute"] / throughput[1]["jobs_per_minute"], 2)
    # -j 2 cannot beat every core busy with -j 1's CPU work: its ceiling is cores / -j 1's busy cores (one job at a
    # time already keeps more than one core busy: a job's verification source run goes beside its conversion)
    ceiling = round(os.cpu_count() / throughput[1]["busy_cores"], 2) if throughput[1]["busy_cores"] else None
    result = {"host": {"machine": platform.machine(), "python": platform.python_version(), "cpus": os.cpu_count()},
              "date": time.strftime("%Y-%m-%d"), "repeat": args.repeat, "cases": cases,
              "batch": {"jobs": args.jobs, **{f"j{k}": v for k, v in throughput.items()},
                        "j2_over_j1": speedup, "j2_over_j1_ceiling": ceiling, "met": speedup >= 1.6},
              "targets": {"no_verify_minus_direct_at_most": 1.0, "convert_over_direct_at_most": 1.5,
                          "cache_hit_seconds_at_most": 1.5, "j2_over_j1_at_least": 1.6}}
    (HERE / "speed.json").write_text(json.dumps(result, indent=2) + "\n")
    yes = lambda ok: "n/a" if ok is None else "yes" if ok else "NO"  # noqa: E731
    lines = [f"# Speed ({result['date']}, {result['host']['cpus']} CPUs, median of {args.repeat} interleaved rounds)",
             "", "(a) `orchestrator convert`, (b) the converter called by hand in one fresh container of the same "
             "image, (c) a cache hit. Seconds.", "",
             "| case | (a) convert | (a) --no-verify | (b) direct | (a) --no-verify - (b) | (a) / (b) | (c) cache hit "
             "| targets met (<= 1 s, <= 1.5x, <= 1.5 s) |", "|---|---|---|---|---|---|---|---|"]
    for name, m in cases.items():
        met = m["met"]
        direct_cell = m["direct"] if m["direct"] is not None else f"fails by hand: {m['direct_failed']}"
        ratio = f"{m['convert_over_direct']}x" if m["convert_over_direct"] is not None else "-"
        lines.append(f"| {name} | {m['convert']} | {m['convert_no_verify']} | {direct_cell} | "
                     f"{m['no_verify_minus_direct'] if m['direct'] is not None else '-'} | {ratio} | {m['cache_hit']} | "
                     f"{yes(met['no_verify_within_1s_of_direct'])}, {yes(met['convert_at_most_1.5x_direct'])}, "
                     f"{yes(met['cache_hit_at_most_1.5s'])} |")
    lines += ["", f"Batch of {args.jobs} small Keras conversions: -j 1 {throughput[1]['seconds']} s "
              f"({throughput[1]['jobs_per_minute']} jobs/min), -j 2 {throughput[2]['seconds']} s "
              f"({throughput[2]['jobs_per_minute']} jobs/min): {speedup}x (target at least 1.6x: {yes(speedup >= 1.6)}).",
              "", f"Busy cores: -j 1 {throughput[1]['busy_cores']} ({throughput[1]['cpu_seconds']} CPU seconds), -j 2 "
              f"{throughput[2]['busy_cores']} ({throughput[2]['cpu_seconds']} CPU seconds), of {os.cpu_count()}. "
              f"With -j 1's CPU work on every core, -j 2 would be {ceiling}x: the ceiling of the ratio."]
    (HERE / "speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
