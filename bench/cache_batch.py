"""The conversion cache and batch throughput, measured through the real CLI; writes bench/cache_batch.json and .md.

    python bench/cache_batch.py [--jobs 6] [--repeat 2]
- cold: `convert keras` of the sample CNN with --no-cache (every step and verification run for real);
- hit: the same conversion again with the cache holding it (no container starts);
- batch: JOBS small conversions (the same CNN, each job its own output and quantization so none is a cache hit)
  run by `orchestrator batch -j 1` and `-j 2`, as jobs per minute.
Images must be built (`make images`). The cache is a folder of its own, removed afterwards."""

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
MODES = ("none", "float16", "dynamic")


def orch(env, *args, check=True):
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "orchestrator", *map(str, args)], capture_output=True, text=True,
                          cwd=HERE.parent, env=env)
    if check and proc.returncode != 0:
        raise SystemExit(f"bench: {' '.join(map(str, args))} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return time.monotonic() - start, proc


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--jobs", type=int, default=6)
    p.add_argument("--repeat", type=int, default=2)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = dict(os.environ, ORCHESTRATOR_CACHE_DIR=str(tmp / "cache"), ORCHESTRATOR_NO_CACHE="")
        orch(env, "sample", "keras", tmp / "keras")
        model = tmp / "keras" / "model.h5"
        cold, hit = [], []
        orch(env, "convert", "keras", model, tmp / "fill", "--quiet")  # the entry the hits are served from
        for i in range(args.repeat):  # interleaved: cold, hit, cold, hit
            cold.append(orch(env, "convert", "keras", model, tmp / f"cold{i}", "--no-cache", "--quiet")[0])
            seconds, proc = orch(env, "convert", "keras", model, tmp / f"hit{i}", "--quiet")
            if "runs from the cache" not in proc.stdout:
                raise SystemExit("bench: the repeated conversion was not a cache hit")
            hit.append(seconds)
        throughput = {}
        for workers in (1, 2):
            folder = tmp / f"batch-j{workers}"
            folder.mkdir()
            jobs = "".join(f"  - {{name: j{i}, input: {model}, output_dir: out{i}, "
                           f"flags: {{quantize: {MODES[i % len(MODES)]}}}}}\n" for i in range(args.jobs))
            (folder / "jobs.yaml").write_text(f"defaults: {{from: keras}}\njobs:\n{jobs}")
            seconds, _ = orch(dict(env, ORCHESTRATOR_NO_CACHE="1"), "batch", folder / "jobs.yaml", "-j", workers,
                              "--quiet")
            throughput[workers] = {"seconds": round(seconds, 2), "jobs_per_minute": round(args.jobs * 60 / seconds, 2)}
    result = {"host": {"machine": platform.machine(), "python": platform.python_version(), "cpus": os.cpu_count()},
              "date": time.strftime("%Y-%m-%d"), "jobs": args.jobs, "repeat": args.repeat,
              "convert_cold_seconds": round(statistics.median(cold), 2),
              "convert_cache_hit_seconds": round(statistics.median(hit), 2),
              "batch": {f"j{k}": v for k, v in throughput.items()},
              "batch_speedup_j2_over_j1": round(throughput[2]["jobs_per_minute"] / throughput[1]["jobs_per_minute"], 2),
              "targets": {"cache_hit_seconds_at_most": 1.5, "j2_over_j1_at_least": 1.6}}
    (HERE / "cache_batch.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# Cache and batch ({result['date']}, {result['host']['cpus']} CPUs)", "",
             "| measure | value | target |", "|---|---|---|",
             f"| convert keras CNN, cold (--no-cache), median of {args.repeat} | {result['convert_cold_seconds']} s | |",
             f"| the same, cache hit | {result['convert_cache_hit_seconds']} s | at most 1.5 s |",
             f"| batch of {args.jobs}, -j 1 | {throughput[1]['seconds']} s ({throughput[1]['jobs_per_minute']} jobs/min) | |",
             f"| batch of {args.jobs}, -j 2 | {throughput[2]['seconds']} s ({throughput[2]['jobs_per_minute']} jobs/min) | |",
             f"| -j 2 over -j 1 | {result['batch_speedup_j2_over_j1']}x | at least 1.6x |"]
    (HERE / "cache_batch.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
