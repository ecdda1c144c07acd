"""Run one step in its stack's container: read-only inputs, a fresh output folder, no network,
the host user's uid/gid, a memory limit and a timeout. Builds a ContainerSpec (plain data) for an engine."""

import os
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator import protocol
from orchestrator.engine import ContainerSpec, Mount
from orchestrator.errors import StepFailed, StepRejectedInput

EX_DATAERR = 65  # step_sdk.reject: the user's input is unusable
STDERR_TAIL_LINES = 25


@dataclass(frozen=True)
class StackImage:
    """A stack's current image, ready to run: what a StepRun needs of the stack."""

    stack: str
    tag: str
    id: str
    interpreter: str = "python"
    environment: tuple = ()  # (name, value) pairs from stack.json
    worker: tuple = None  # the command of its warm worker (stack.json "worker"), or None

    @classmethod
    def of(cls, stack, tag, image_id):
        return cls(stack.name, tag, image_id, stack.interpreter, stack.environment, stack.worker)


@dataclass
class StepRun:
    """What the pipeline asks the runner to do."""

    name: str
    image: StackImage
    script: str
    args: list = field(default_factory=list)  # arguments, already in container paths
    inputs: dict = field(default_factory=dict)  # host path -> container path (mounted read-only)
    out_dir: Path = None  # host folder mounted read-write at protocol.OUT_DIR

    @property
    def stack(self):
        return self.image.stack

    def command(self):
        return [self.image.interpreter, f"{protocol.STEPS_DIR}/{self.script}", *map(str, self.args)]


def host_user():
    return f"{os.getuid()}:{os.getgid()}"


def container_spec(run, memory="8g", timeout=3600.0, user=None):
    mounts = [Mount(str(Path(src).resolve()), dst, read_only=True) for src, dst in run.inputs.items()]
    mounts.append(Mount(str(Path(run.out_dir).resolve()), protocol.OUT_DIR, read_only=False))
    return ContainerSpec(
        image=run.image.tag,
        command=run.command() + ["--out", protocol.OUT_DIR],
        mounts=mounts,
        environment={"HOME": "/tmp", "PYTHONPATH": protocol.STEPS_DIR, **dict(run.image.environment)},
        user=host_user() if user is None else user,
        network="none",
        memory=memory,
        timeout=timeout,
        name_hint=run.name,
        # ORCHESTRATOR_SESSION tags every container of one invocation (tests and wrappers find theirs by it)
        labels={"org.orchestrator.session": os.environ.get("ORCHESTRATOR_SESSION", str(os.getpid()))},
        worker=run.image.worker,
    )


def host_paths(text, run):
    """Show the user their own paths, not the container's."""
    pairs = [(dst, src) for src, dst in run.inputs.items()] + [(protocol.OUT_DIR, str(run.out_dir))]
    for dst, src in sorted(pairs, key=lambda p: -len(p[0])):
        text = text.replace(dst, src)
    return text


def run_record(result):
    """What the manifest says of how a run ran: whether the conversion cache answered it (and how long the stored
    run took), and whether it ran in its stack's warm worker."""
    if result.cached:
        return {"cached": True, "cached_seconds": result.cached_seconds}
    return {"cached": False, "worker": result.worker}


def execute(engine, run, memory="8g", timeout=3600.0, log=None):
    """Run the step; return (step.json contents, RunResult). Raise StepFailed / StepRejectedInput."""
    run.out_dir = Path(run.out_dir)
    run.out_dir.mkdir(parents=True, exist_ok=False)  # a fresh output folder for every step
    spec = container_spec(run, memory=memory, timeout=timeout)
    prefix = f"[{run.name}] "
    result = engine.run(spec, log=(lambda line: log(prefix + line)) if log else None)
    tail = host_paths("\n".join(result.stderr.splitlines()[-STDERR_TAIL_LINES:]), run)
    image = run.image.tag
    if result.timed_out:
        raise StepFailed(run.name, image, result.exit_code, tail, spec.command, reason=f"timed out after {timeout:g} s")
    if result.exit_code == EX_DATAERR:
        raise StepRejectedInput(run.name, image, result.exit_code, tail, spec.command)
    if result.exit_code == 137:
        raise StepFailed(run.name, image, 137, tail, spec.command,
                         reason=f"killed, probably over the memory limit of {memory}; raise it with --memory")
    if result.exit_code != 0:
        raise StepFailed(run.name, image, result.exit_code, tail, spec.command)
    meta, why = protocol.read("step", run.out_dir / "step.json")
    if why:
        raise StepFailed(run.name, image, 0, tail, spec.command, reason=f"the step broke its protocol: {why}")
    return meta, result
