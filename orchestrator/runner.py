"""Run one step in its stack's container: read-only inputs, a fresh output folder, no network,
the host user's uid/gid, a memory limit and a timeout. Builds a ContainerSpec (plain data) for an engine."""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.engine import ContainerSpec, Mount
from orchestrator.errors import StepFailed, StepRejectedInput

EX_DATAERR = 65
STEPS_DIR = "/opt/steps"
STDERR_TAIL_LINES = 25


@dataclass
class StepRun:
    """What the pipeline asks the runner to do."""

    name: str
    stack: str
    image: str  # tag
    image_id: str
    script: str
    args: list = field(default_factory=list)  # arguments, already in container paths
    inputs: dict = field(default_factory=dict)  # host path -> container path (mounted read-only)
    out_dir: Path = None  # host folder mounted read-write at /out


def interpreter(script):
    """Step scripts are Python, or JavaScript for Node.js stacks."""
    return "node" if script.endswith(".js") else "python"


def host_user():
    return f"{os.getuid()}:{os.getgid()}"


def container_spec(run, memory="8g", timeout=3600.0, user=None):
    mounts = [Mount(str(Path(src).resolve()), dst, read_only=True) for src, dst in run.inputs.items()]
    mounts.append(Mount(str(Path(run.out_dir).resolve()), "/out", read_only=False))
    return ContainerSpec(
        image=run.image,
        command=[interpreter(run.script), f"{STEPS_DIR}/{run.script}", *map(str, run.args), "--out", "/out"],
        mounts=mounts,
        environment={"HOME": "/tmp", "PYTHONPATH": STEPS_DIR, "NODE_PATH": "/opt/tfjs/node_modules"},
        user=host_user() if user is None else user,
        network="none",
        memory=memory,
        timeout=timeout,
        name_hint=run.name,
        # ORCHESTRATOR_SESSION tags every container of one invocation (tests and wrappers find theirs by it)
        labels={"org.orchestrator.session": os.environ.get("ORCHESTRATOR_SESSION", str(os.getpid()))},
    )


def host_paths(text, run):
    """Show the user their own paths, not the container's."""
    pairs = [(dst, src) for src, dst in run.inputs.items()] + [("/out", str(run.out_dir))]
    for dst, src in sorted(pairs, key=lambda p: -len(p[0])):
        text = text.replace(dst, src)
    return text


def execute(engine, run, memory="8g", timeout=3600.0, log=None):
    """Run the step; return (step.json contents, RunResult). Raise StepFailed / StepRejectedInput."""
    run.out_dir = Path(run.out_dir)
    run.out_dir.mkdir(parents=True, exist_ok=False)  # a fresh output folder for every step
    spec = container_spec(run, memory=memory, timeout=timeout)
    prefix = f"[{run.name}] "
    result = engine.run(spec, log=(lambda line: log(prefix + line)) if log else None)
    tail = host_paths("\n".join(result.stderr.splitlines()[-STDERR_TAIL_LINES:]), run)
    if result.timed_out:
        raise StepFailed(run.name, run.image, result.exit_code, tail, spec.command,
                         reason=f"timed out after {timeout:g} s")
    if result.exit_code == EX_DATAERR:
        raise StepRejectedInput(run.name, run.image, result.exit_code, tail, spec.command)
    if result.exit_code == 137:
        raise StepFailed(run.name, run.image, 137, tail, spec.command,
                         reason=f"killed, probably over the memory limit of {memory}; raise it with --memory")
    if result.exit_code != 0:
        raise StepFailed(run.name, run.image, result.exit_code, tail, spec.command)
    meta_file = run.out_dir / "step.json"
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, ValueError):
        raise StepFailed(run.name, run.image, 0, tail, spec.command, reason="the step wrote no step.json")
    return meta, result
