"""Issue 17's bench: the same batch of small Keras -> TFLite jobs (verified, cache off) on this host at -j 2 and on
a two-node Swarm made on this machine (tests/cluster: Docker-in-Docker nodes that get the tf2 image by images
save/load, the manager drained); writes bench/swarm.json and bench/swarm.md.

    python bench/swarm.py [--jobs 6] [--max-concurrent 4]

The host's engine must not be in a swarm already (the bench makes one and leaves it). Images must be built."""

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
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "tests" / "cluster")]

from swarm_cluster import Cluster, docker_cli  # noqa: E402

from orchestrator.engine import Engine  # noqa: E402


def orch(env, *args):
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "orchestrator", *map(str, args)], capture_output=True, text=True,
                          env=env)
    if proc.returncode != 0:
        raise SystemExit(f"bench: orchestrator {' '.join(map(str, args))} failed:\n{proc.stderr[-3000:]}")
    return time.monotonic() - started, proc


def jobs_file(folder, model, count):
    folder.mkdir(parents=True)
    body = "".join(f"  - {{name: j{i}, output_dir: out{i}}}\n" for i in range(count))
    (folder / "jobs.yaml").write_text(f"defaults: {{from: keras, input: {model}}}\njobs:\n{body}")
    return folder / "jobs.yaml"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=6)
    parser.add_argument("--max-concurrent", type=int, default=4)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(HERE.parent), "ORCHESTRATOR_NO_CACHE": "1", "ORCHESTRATOR_NO_REPORT": "1"}
    with tempfile.TemporaryDirectory(prefix="bench-swarm-", dir=os.environ.get("TMPDIR", "/var/tmp")) as tmp:
        tmp = Path(tmp)
        model = tmp / "sample" / "model.h5"
        orch(env, "sample", "keras", model.parent, "--quiet")
        local, _ = orch(env, "batch", jobs_file(tmp / "local", model, args.jobs), "-j", 2, "--quiet")
        cluster = Cluster(Engine(), tmp / "shared")
        (tmp / "shared").mkdir()
        try:
            cluster.up()
            nodes = cluster.add_nodes(2)
            setup = time.monotonic()
            orch(env, "images", "save", tmp / "tf2.tar", "tf2")
            for ip in nodes.values():
                orch({**env, "DOCKER_HOST": f"tcp://{ip}:2375"}, "images", "load", tmp / "tf2.tar", "--label-node",
                     "--manager", "unix:///var/run/docker.sock")
            setup = time.monotonic() - setup
            docker_cli("node", "update", "--availability", "drain", cluster.manager)
            swarm, proc = orch(env, "batch", jobs_file(tmp / "swarm", model, args.jobs), "--swarm", "--shared-dir",
                               tmp / "shared", "--max-concurrent", args.max_concurrent, "--json")
            placed = sorted({n for r in json.loads(proc.stdout)["jobs"] for n in r["nodes"]})
        finally:
            cluster.down()
    result = {"host": {"machine": platform.machine(), "python": platform.python_version(), "cpus": os.cpu_count()},
              "date": time.strftime("%Y-%m-%d"), "jobs": args.jobs,
              "local_j2": {"seconds": round(local, 2), "jobs_per_hour": round(args.jobs * 3600 / local)},
              "swarm_two_nodes": {"seconds": round(swarm, 2), "jobs_per_hour": round(args.jobs * 3600 / swarm),
                                  "max_concurrent": args.max_concurrent, "nodes": placed},
              "images_save_and_load_seconds": round(setup, 1)}
    result["swarm_over_local"] = round(local / swarm, 2)
    (HERE / "swarm.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# Swarm throughput ({result['date']}, {result['host']['cpus']} CPUs, one machine)", "",
             f"{args.jobs} small Keras H5 -> TFLite jobs, verified, cache off.", "",
             "| run | seconds | jobs per hour |", "|---|---|---|",
             f"| local `batch -j 2` (warm workers) | {local:.1f} | {result['local_j2']['jobs_per_hour']} |",
             f"| `batch --swarm --max-concurrent {args.max_concurrent}`, two Docker-in-Docker nodes "
             f"({', '.join(placed)}) | {swarm:.1f} | {result['swarm_two_nodes']['jobs_per_hour']} |", "",
             f"Swarm / local throughput: {result['swarm_over_local']}x. Getting the tf2 image onto both nodes "
             f"(`images save`, two `images load --label-node`) took {setup:.0f} s, once."]
    (HERE / "swarm.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
