"""Run one step in its stack's container: read-only inputs, a fresh output folder, no network,
the host user's uid/gid, a memory limit and a timeout. Builds a ContainerSpec (plain data) for an engine."""

import os
import shutil
import signal
import socket
from dataclasses import dataclass, field, replace
from pathlib import Path

from orchestrator import protocol
from orchestrator.engine import ContainerSpec, Mount
from orchestrator.errors import StepFailed, StepRejectedInput

EX_DATAERR = 65  # step_sdk.reject: the user's input is unusable
STDERR_TAIL_LINES = 25
# the step's working folder, HOME and TMPDIR: a folder on the host's disk beside its output folder, so converters'
# scratch files neither count against the memory limit (as the /tmp tmpfs does) nor outlive the step
SCRATCH_DIR = "/scratch"
MAX_FILE_SIZE = "64G"  # the largest file a step may write (ORCHESTRATOR_MAX_FILE_SIZE): more fills the host's disk
MAX_WRITE = "64G"  # what a step may write into its folders in all (ORCHESTRATOR_MAX_WRITE): many files fill it too
DISK_RESERVE = 1 << 30  # ... and never so much that its disk has less than this left
OOM_WORDS = "out-of-memory killer"  # step_sdk.stop_if_killed's line when the kernel stopped a step's child for memory


@dataclass(frozen=True)
class StackImage:
    """A stack's current image, ready to run: what a StepRun needs of the stack."""

    stack: str
    tag: str
    id: str
    interpreter: str = "python"
    environment: tuple = ()  # (name, value) pairs from stack.json
    worker: tuple = None  # the command of its warm worker (stack.json "worker"), or None
    bare_worker: tuple = None  # the command of a worker of its image that preloads nothing, or None

    @classmethod
    def of(cls, stack, tag, image_id):
        return cls(stack.name, tag, image_id, stack.interpreter, stack.environment, stack.worker, stack.bare_worker)

    def bare(self):
        """The same image whose steps run in its bare worker: one that imports nothing ahead."""
        return replace(self, worker=self.bare_worker)


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


OWNER_LABEL = "org.orchestrator.owner"  # host:pid:start time of the orchestrator process that made the container


def _process_start(pid):
    """The start time of process `pid` in clock ticks since boot (/proc/PID/stat field 22), or None when there is no
    such process: with the pid it names one process, even after the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def owner():
    """The value of OWNER_LABEL for containers this process makes."""
    return f"{socket.gethostname()}:{os.getpid()}:{_process_start(os.getpid())}"


def reap_orphans(engine):
    """Remove the containers an orchestrator process of this host made and no longer can: it ended while the engine
    was away (dockerd stopped mid-step) or was killed outright, so nothing else will ever remove them. Containers of
    live processes and of other hosts sharing the engine stay. Returns how many were removed."""
    host = socket.gethostname()
    gone = 0
    for container in engine.containers({OWNER_LABEL: None}):
        name, _, rest = container["labels"].get(OWNER_LABEL, "").partition(":")
        pid, _, started = rest.partition(":")
        if name != host or not pid.isdigit() or _process_start(int(pid)) == started:
            continue
        engine.remove(container["id"])
        gone += 1
    return gone


def host_user():
    return f"{os.getuid()}:{os.getgid()}"


def max_file_size():
    from orchestrator.cache import size_setting

    return size_setting("ORCHESTRATOR_MAX_FILE_SIZE", MAX_FILE_SIZE)


class WriteLimit:
    """The host's bound on what a step writes into its folders (its output and its scratch), many files or one: at
    most ORCHESTRATOR_MAX_WRITE (64G), and no more than the free space of their disk at the step's start but
    DISK_RESERVE (a small disk fills up and the step meets ENOSPC instead). The engine asks it while the step runs
    (engine.run's `watch`): a reason to stop the step, or None."""

    def __init__(self, folders):
        from orchestrator.cache import size_setting

        self.folders = [Path(f) for f in folders]
        self.limit, self.why = size_setting("ORCHESTRATOR_MAX_WRITE", MAX_WRITE), "ORCHESTRATOR_MAX_WRITE"
        free = shutil.disk_usage(self.folders[0]).free
        if DISK_RESERVE < free - DISK_RESERVE < self.limit:
            self.limit, self.why = free - DISK_RESERVE, f"the free disk space but {_size(DISK_RESERVE)}"

    def __call__(self):
        used = sum(_disk_bytes(f) for f in self.folders)
        if used > self.limit:
            return (f"stopped: it wrote {_size(used)} into its folders, over the {_size(self.limit)} a step may write "
                    f"({self.why})")
        return None


def _disk_bytes(folder):
    """The disk space the files below `folder` take (their blocks: a sparse file counts what it really holds)."""
    total, todo = 0, [str(folder)]
    while todo:
        try:
            entries = list(os.scandir(todo.pop()))
        except OSError:  # gone meanwhile, or unreadable: the step's own business
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            total += st.st_blocks * 512
            if entry.is_dir(follow_symlinks=False):
                todo.append(entry.path)
    return total


def _size(n):
    return f"{n / (1 << 30):.1f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.0f} MiB"


def scratch_dir(run):
    return Path(run.out_dir).with_name(Path(run.out_dir).name + ".scratch")


def container_spec(run, memory="8g", timeout=3600.0, user=None):
    mounts = [Mount(str(Path(src).resolve()), dst, read_only=True) for src, dst in run.inputs.items()]
    mounts.append(Mount(str(Path(run.out_dir).resolve()), protocol.OUT_DIR, read_only=False))
    mounts.append(Mount(str(scratch_dir(run).resolve()), SCRATCH_DIR, read_only=False))
    return ContainerSpec(
        image=run.image.tag,
        command=run.command() + ["--out", protocol.OUT_DIR],
        mounts=mounts,
        environment={"HOME": SCRATCH_DIR, "TMPDIR": SCRATCH_DIR, "PYTHONPATH": protocol.STEPS_DIR,
                     **dict(run.image.environment)},
        working_dir=SCRATCH_DIR,
        max_file_size=max_file_size(),
        user=host_user() if user is None else user,
        network="none",
        memory=memory,
        timeout=timeout,
        name_hint=run.name,
        # ORCHESTRATOR_SESSION tags every container of one invocation (tests and wrappers find theirs by it)
        labels={"org.orchestrator.session": os.environ.get("ORCHESTRATOR_SESSION", str(os.getpid())),
                OWNER_LABEL: owner()},
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


def killed_reason(code, memory, tail, oom_killed=False):
    """Why a step that exited 128+N was stopped by signal N, naming the limit and the flag that raises it. Certain
    of the memory limit when the engine or the step saw the kernel's out-of-memory killer at work."""
    try:
        name = signal.Signals(code - 128).name
    except ValueError:
        return None
    if code - 128 == signal.SIGKILL:
        certain = oom_killed or OOM_WORDS in tail
        return (f"killed by {name}{' at' if certain else ', probably over'} the memory limit of {memory}; "
                "raise it with --memory")
    return f"killed by {name}"


def execute(engine, run, memory="8g", timeout=3600.0, log=None):
    """Run the step; return (step.json contents, RunResult). Raise StepFailed / StepRejectedInput."""
    run.out_dir = Path(run.out_dir)
    run.out_dir.mkdir(parents=True, exist_ok=False)  # a fresh output folder for every step
    scratch = scratch_dir(run)
    scratch.mkdir(parents=True, exist_ok=True)
    spec = container_spec(run, memory=memory, timeout=timeout)
    prefix = f"[{run.name}] "
    try:
        result = engine.run(spec, log=(lambda line: log(prefix + line)) if log else None,
                            watch=WriteLimit([run.out_dir, scratch]))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    tail = host_paths("\n".join(result.stderr.splitlines()[-STDERR_TAIL_LINES:]), run)
    image = run.image.tag
    if result.stopped:
        raise StepFailed(run.name, image, result.exit_code, tail, spec.command, reason=result.stopped)
    if result.timed_out:
        raise StepFailed(run.name, image, result.exit_code, tail, spec.command, reason=f"timed out after {timeout:g} s")
    if result.exit_code == EX_DATAERR:
        raise StepRejectedInput(run.name, image, result.exit_code, tail, spec.command)
    if 128 < result.exit_code < 128 + 65:
        raise StepFailed(run.name, image, result.exit_code, tail, spec.command,
                         reason=killed_reason(result.exit_code, memory, tail, result.oom_killed))
    if result.exit_code != 0:
        raise StepFailed(run.name, image, result.exit_code, tail, spec.command)
    meta, why = protocol.read("step", run.out_dir / "step.json")
    if why:
        raise StepFailed(run.name, image, 0, tail, spec.command, reason=f"the step broke its protocol: {why}")
    return meta, result
