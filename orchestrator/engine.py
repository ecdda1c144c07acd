"""The only module that talks to Docker (through the official Docker SDK for Python).

Everything else hands it plain data (`ContainerSpec`, build arguments) and gets plain data back,
so orchestration logic can be tested against a fake engine without a Docker daemon.
"""

import contextlib
import hashlib
import os
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from orchestrator.errors import BuildFailed, EnvironmentProblem, InputError

# the classic builder's lines on a step's container: " ---> Running in ID", "Removing intermediate container ID"
STEP_CONTAINER = re.compile(r"^\s*(?:---> (Running in)|Removing intermediate container) ([0-9a-f]{12,64})\s*$",
                            re.MULTILINE)
NO_ENGINE_FIX = "start one with `make engine` (installs Debian's docker.io and starts dockerd), or set DOCKER_HOST"


@dataclass(frozen=True)
class Mount:
    source: str  # host path
    target: str  # container path
    read_only: bool = True


@dataclass
class ContainerSpec:
    """Everything needed to run one step's container; built by the runner, consumed by an engine."""

    image: str
    command: list
    mounts: list = field(default_factory=list)
    environment: dict = field(default_factory=dict)
    user: str = ""
    network: str = "none"
    memory: str = "8g"
    timeout: float = 3600.0
    read_only_root: bool = True
    # /tmp only for what ignores TMPDIR: a tmpfs counts against the memory limit, so converters' scratch goes to a
    # disk-backed folder the runner mounts (runner.SCRATCH_DIR)
    tmpfs: dict = field(default_factory=lambda: {"/tmp": "rw,exec,size=512m"})
    cap_drop: tuple = ("ALL",)
    # the largest file a process may write (RLIMIT_FSIZE), in bytes: a step cannot fill the host's disk with one
    # file; beyond it a write fails with EFBIG ("File too large"). None: no limit
    max_file_size: int = None
    pids_limit: int = 4096  # processes and threads together (TensorFlow starts some per core): a fork bomb stops here
    security_opt: tuple = ("no-new-privileges",)
    working_dir: str = "/tmp"
    name_hint: str = "step"
    labels: dict = field(default_factory=dict)
    # the command of a warm worker that can run this command instead of a fresh container (orchestrator/workers.py);
    # None: the stack has none. Engines ignore it; it decides nothing about what runs, only where.
    worker: tuple = None


@dataclass
class RunResult:
    exit_code: int
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False
    cached: bool = False  # answered by the conversion cache (orchestrator/cache.py), no container ran
    cached_seconds: float = None  # ... and how long the run it stored took
    worker: bool = False  # ran in a stack's warm worker (orchestrator/workers.py), not a fresh container
    oom_killed: bool = False  # the kernel's out-of-memory killer stopped a process of the run (its memory limit)
    stopped: str = None  # why the host stopped the run before its end (what `watch` said), or None


@runtime_checkable
class ContainerEngine(Protocol):
    """What the orchestrator needs of a container engine. The Docker engine below implements it; so does the unit
    tests' fake, and tests/engine_contract.py runs the same checks against both."""

    def info(self) -> dict: ...

    def image(self, ref) -> dict: ...  # {'id', 'tags', 'size', 'labels', 'created'}, or None when absent

    def build(self, context_dir, tag, buildargs=None, labels=None, nocache=False, log=None) -> str: ...

    def import_rootfs(self, tarball, repository, tag, changes=()) -> str: ...

    def layers(self, ref) -> list: ...  # [(key, bytes)] oldest first; images built on the same parent share keys

    def prune_images(self, labels) -> dict: ...  # untagged leaf images carrying all `labels`: {'images', 'bytes'}

    def save(self, refs, out, progress=None) -> None: ...  # out: a writable binary file; progress(n bytes)

    def load(self, source, progress=None) -> list: ...  # source: a readable binary file (tar, or gzip of one)

    # watch: called about every WATCH_EVERY s while the run runs; when it returns a reason, the run is stopped
    def run(self, spec, log=None, watch=None) -> "RunResult": ...

    def start(self, spec) -> str: ...  # a detached container running spec.command; its id

    def state(self, container) -> dict: ...  # {'running', 'exit_code', 'oom_killed'}; None when it is gone

    def remove(self, container) -> None: ...  # kill and remove it (no error when it is gone)

    def containers(self, labels) -> list: ...  # all (running or not) carrying every label: [{'id', 'labels', 'running'}]

    def session(self, rw=(), ro=()): ...  # a context giving the engine one conversion's runs go to (workers.py)


@contextlib.contextmanager
def _engine_call(what):
    """Say a connection lost mid-call as that (exit 5), not as the SDK's traceback; `what`: what was going on."""
    from requests.exceptions import ChunkedEncodingError, ReadTimeout
    from requests.exceptions import ConnectionError as ReqConnectionError

    try:
        yield
    except (ReqConnectionError, ReadTimeout, ChunkedEncodingError) as exc:  # refused, reset, or cut mid-answer
        raise EnvironmentProblem(f"lost the connection to the Docker engine while {what} ({type(exc).__name__}); "
                                 "is dockerd still running?") from exc


class Engine:
    """A connection to a Docker engine (a ContainerEngine)."""

    def __init__(self, client=None):
        self._client = client

    # -- connection ---------------------------------------------------------------------------
    @property
    def client(self):
        if self._client is None:
            import docker  # imported here so that `orchestrator --help` works with no engine at all
            from docker.errors import DockerException

            try:
                client = docker.from_env(timeout=600)
                client.ping()
            except DockerException as exc:
                where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
                raise EnvironmentProblem(f"no Docker engine answers at {where}; {NO_ENGINE_FIX}") from exc
            self._client = client
        return self._client

    def info(self):
        v = self.client.version()
        return {"server": v.get("Version"), "api": v.get("ApiVersion"), "os": v.get("Os"), "arch": v.get("Arch")}

    # -- images -------------------------------------------------------------------------------
    def image(self, ref):
        """Return {'id', 'tags', 'size', 'labels', 'created'} or None when the image is not present."""
        from docker.errors import ImageNotFound

        try:
            img = self.client.images.get(ref)
        except ImageNotFound:
            return None
        attrs = img.attrs
        return {
            "id": img.id,
            "tags": list(img.tags),
            "size": attrs.get("Size", 0),
            "labels": (attrs.get("Config") or {}).get("Labels") or {},
            "created": attrs.get("Created", ""),
        }

    def build(self, context_dir, tag, buildargs=None, labels=None, nocache=False, log=None):
        """Build `context_dir/Dockerfile` as `tag`; stream the build log to `log`; return the image id.

        Interrupted (Ctrl-C, SIGTERM), it stops the build before it raises: the engine cancels a build whose client
        hangs up, so the build's HTTP response is closed; and the step container the build runs (" ---> Running in
        ID" and no "Removing intermediate container ID" yet) is removed, so that step is over when it returns."""
        from docker.errors import APIError

        api, me, responses = self.client.api, threading.get_ident(), []

        def keep(response, *args, **kwargs):  # a requests hook on the client's session: the build's response
            if threading.get_ident() == me:
                responses.append(response)

        tail, running = [], set()
        image_id = None
        try:
            api.hooks["response"].append(keep)
            try:
                stream = api.build(
                    path=str(context_dir), tag=tag, buildargs=buildargs or {}, labels=labels or {},
                    nocache=nocache, rm=True, forcerm=True, decode=True, pull=False,
                )
            finally:
                api.hooks["response"].remove(keep)
            for chunk in stream:
                if "error" in chunk:
                    tail.append(chunk["error"])
                    raise BuildFailed(tag, "\n".join(tail[-30:]))
                text = chunk.get("stream") or ""
                if text:
                    tail.extend(text.splitlines())
                    del tail[:-60]
                    for step in STEP_CONTAINER.finditer(text):
                        if step.group(1):
                            running.add(step.group(2))
                        else:
                            running.discard(step.group(2))
                    if log:
                        log(text.rstrip("\n"))
                aux = chunk.get("aux") or {}
                if "ID" in aux:
                    image_id = aux["ID"]
        except APIError as exc:
            raise BuildFailed(tag, f"{exc.explanation or exc}") from exc
        except KeyboardInterrupt:
            self._cancel_build(responses, running)
            raise
        if image_id is None:
            info = self.image(tag)
            image_id = info["id"] if info else None
        if image_id is None:
            raise BuildFailed(tag, "\n".join(tail[-30:]) or "the engine reported no image")
        return image_id

    def _cancel_build(self, responses, containers, wait=10.0):
        """Stop an interrupted build: hang up (the engine then cancels the build, and kills and removes the step's
        container), and remove the step's container here too, waiting until it is gone: its step is over then, and
        the stage it was built on is no longer in use, so it can be pruned. Best effort: an engine going away as
        well (the host shutting down) must not turn the interrupt into a traceback."""
        from docker.errors import APIError

        deadline = time.monotonic() + wait
        with contextlib.suppress(Exception):
            for response in responses:
                response.close()
            for container in containers:
                while time.monotonic() < deadline:
                    with contextlib.suppress(APIError):  # the engine failing to remove it while it removes it too
                        self.remove(container)
                    if self.state(container) is None:
                        break
                    time.sleep(0.1)

    def layers(self, ref):
        """The image's layers that hold bytes, oldest first, as (key, size): a key stands for the layer and all
        below it (the image history up to it), so images built on the same parent share those keys and the sizes of
        the distinct keys of several images add up to the disk they take together."""
        chain, found = hashlib.sha256(), []
        for entry in reversed(self.client.api.history(ref)):
            chain.update(f"{entry.get('Created')}\0{entry.get('CreatedBy')}\0{entry.get('Size')}\n".encode())
            if entry.get("Size"):
                found.append((chain.hexdigest()[:24], int(entry["Size"])))
        return found

    def prune_images(self, labels):
        """Remove the untagged images that no other image builds on (a build's leftover stages, images whose tag
        moved) and that carry every one of `labels` ({name: value}; at least one: never a blanket prune), with
        their untagged parents. Returns {'images': how many were deleted, 'bytes': the space reclaimed}."""
        from docker.errors import APIError

        if not labels:
            raise ValueError("prune_images needs at least one label")
        deadline = time.monotonic() + 60
        while True:
            try:
                found = self.client.images.prune(filters={"dangling": True,
                                                          "label": [f"{k}={v}" for k, v in sorted(labels.items())]})
                break
            except APIError as exc:  # 409: one prune at a time on an engine; another process's is running
                if exc.status_code != 409 or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        deleted = [d for d in found.get("ImagesDeleted") or () if d.get("Deleted")]
        return {"images": len(deleted), "bytes": int(found.get("SpaceReclaimed") or 0)}

    def import_rootfs(self, tarball, repository, tag, changes=()):
        """`docker import` a root-filesystem tarball; `changes` are Dockerfile lines (LABEL, ENV, CMD)."""
        self.client.api.import_image(src=str(tarball), repository=repository, tag=tag, changes=list(changes))
        info = self.image(f"{repository}:{tag}")
        if info is None:
            raise EnvironmentProblem(f"docker import of {tarball} produced no image {repository}:{tag}")
        return info["id"]

    def save(self, refs, out, progress=None):
        """`docker save` several images as one tar written to `out` (the engine's GET /images/get?names=...)."""
        from requests.exceptions import HTTPError

        api = self.client.api
        url = f"{api.base_url}/v{api.api_version}/images/get"
        response = api.get(url, params={"names": list(refs)}, stream=True)
        try:
            response.raise_for_status()
        except HTTPError as exc:
            raise EnvironmentProblem(f"the engine cannot save {', '.join(refs)}: {exc}") from exc
        for chunk in response.iter_content(chunk_size=1 << 20):
            out.write(chunk)
            if progress:
                progress(len(chunk))

    def load(self, source, progress=None):
        """`docker load` of a tar or a gzip-compressed tar (the engine decompresses it), streamed from `source`."""
        from docker.errors import APIError, ImageLoadError

        try:
            images = self.client.images.load(_Counted(source, progress))
        except (ImageLoadError, APIError) as exc:  # not an image archive, or a truncated one
            raise InputError(getattr(source, "name", "the archive"),
                             f"the engine cannot load it ({str(exc).strip().splitlines()[-1][:200]})") from None
        return [t for img in images for t in img.tags]

    # -- containers ---------------------------------------------------------------------------
    def run(self, spec, log=None, watch=None):
        """Run one container to completion (or until `watch` gives a reason to stop it); stream its output to `log`;
        always remove it."""
        with _engine_call(f"{spec.name_hint} ran"):
            return self._run(spec, log, watch)

    def session(self, rw=(), ro=()):
        """A plain engine runs every step in a fresh container: its session is itself (workers.WorkerPool keeps
        warm workers for the folders `rw` and `ro`)."""
        return contextlib.nullcontext(self)

    def _create(self, spec, auto_remove=False):
        """A created (not started) container for `spec`, with every hardening setting the spec carries."""
        import docker
        from docker.errors import ImageNotFound

        mounts = [docker.types.Mount(m.target, m.source, type="bind", read_only=m.read_only) for m in spec.mounts]
        try:
            return self.client.containers.create(
                spec.image, spec.command, mounts=mounts, environment=spec.environment, user=spec.user or None,
                network_mode=spec.network, mem_limit=spec.memory, memswap_limit=spec.memory,
                read_only=spec.read_only_root, tmpfs=spec.tmpfs, cap_drop=list(spec.cap_drop),
                security_opt=list(spec.security_opt), working_dir=spec.working_dir, pids_limit=spec.pids_limit,
                ulimits=[docker.types.Ulimit(name="fsize", soft=spec.max_file_size, hard=spec.max_file_size)]
                if spec.max_file_size else None,
                detach=True,
                labels={"org.orchestrator.step": spec.name_hint, **spec.labels}, auto_remove=auto_remove,
            )
        except ImageNotFound:  # planned with it, and since removed (`docker rmi`, a prune): no pull, say so
            raise EnvironmentProblem(f"image {spec.image} is no longer in the engine (removed after the conversion "
                                     "started?); run `orchestrator images build` and convert again") from None

    def start(self, spec):
        """Start a container that keeps running (a warm worker); return its id. `remove` ends it; so does its own
        exit (the engine removes it then, so nothing is left even when the orchestrator itself was killed)."""
        with _engine_call(f"{spec.name_hint} started"):
            container = self._create(spec, auto_remove=True)
            try:
                container.start()
            except Exception:
                with contextlib.suppress(Exception):  # the engine may be gone: then so is the container
                    self.remove(container.id)
                raise
        return container.id

    def state(self, container):
        from docker.errors import NotFound

        try:
            with _engine_call("a step ran"):
                attrs = self.client.api.inspect_container(container)
        except NotFound:
            return None
        st = attrs.get("State") or {}
        return {"running": bool(st.get("Running")), "exit_code": st.get("ExitCode"),
                "oom_killed": bool(st.get("OOMKilled"))}

    def remove(self, container):
        from docker.errors import APIError, NotFound

        try:
            self.client.api.remove_container(container, force=True)
        except NotFound:
            pass
        except APIError as exc:
            if exc.status_code != 409:  # 409: the engine is removing it already (it exited, and auto-removes)
                raise

    def containers(self, labels):
        """Every container (running or not) that carries all of `labels` ({name: value, or None for any value})."""
        wanted = [k if v is None else f"{k}={v}" for k, v in sorted(labels.items())]
        found = self.client.api.containers(all=True, filters={"label": wanted})
        return [{"id": c["Id"], "labels": c.get("Labels") or {}, "running": c.get("State") == "running"}
                for c in found]

    def _run(self, spec, log, watch):
        from requests.exceptions import ConnectionError as ReqConnectionError
        from requests.exceptions import ReadTimeout

        container = self._create(spec)
        start = time.monotonic()
        timed_out = False
        stopped, ended = [], threading.Event()
        try:
            container.start()
            if watch:
                threading.Thread(target=_watch, args=(watch, container.kill, stopped, ended), daemon=True).start()
            pump = None
            if log:
                def _pump():
                    try:
                        for chunk in container.logs(stream=True, follow=True):
                            for line in chunk.decode("utf-8", "replace").splitlines():
                                log(line)
                    except Exception:  # the container may vanish under us on Ctrl-C
                        pass
                pump = threading.Thread(target=_pump, daemon=True)
                pump.start()
            try:
                status = container.wait(timeout=spec.timeout)
                exit_code = int(status.get("StatusCode", -1))
            except (ReadTimeout, ReqConnectionError):
                # over a unix socket a read timeout arrives as a ConnectionError too: the clock tells them apart
                if time.monotonic() - start < spec.timeout * 0.99:
                    raise
                timed_out = True
                container.kill()
                exit_code = -1
            if pump:
                pump.join(timeout=5)
            out = container.logs(stdout=True, stderr=False).decode("utf-8", "replace")
            err = container.logs(stdout=False, stderr=True).decode("utf-8", "replace")
            oom = self._oom_killed(container)
            return RunResult(exit_code, out, err, time.monotonic() - start, timed_out, oom_killed=oom,
                             stopped=stopped[0] if stopped else None)
        finally:
            ended.set()
            try:
                container.remove(force=True)
            except Exception:
                pass


    @staticmethod
    def _oom_killed(container):
        """Whether the kernel's out-of-memory killer stopped a process of the container (its memory limit)."""
        try:
            container.reload()
            return bool(container.attrs.get("State", {}).get("OOMKilled"))
        except Exception:  # gone already: nothing to tell
            return False


WATCH_EVERY = 1.0


def _watch(watch, kill, stopped, ended):
    """Ask `watch` every WATCH_EVERY s until the run ends; on its first reason, note it and `kill` the run."""
    while not ended.wait(WATCH_EVERY):
        why = watch()
        if why:
            stopped.append(why)
            with contextlib.suppress(Exception):  # it may have ended meanwhile
                kill()
            return


class _Counted:
    """A readable file that reports each read's size (the upload's progress); its length comes from its fileno."""

    mode = "rb"

    def __init__(self, fh, progress):
        self._fh, self._progress = fh, progress

    def fileno(self):
        return self._fh.fileno()

    def read(self, size=-1):
        data = self._fh.read(size)
        if self._progress and data:
            self._progress(len(data))
        return data
