"""Steps as Docker Swarm services: `orchestrator batch JOBS.yaml --swarm` runs every step of every job on the cluster
the local engine manages, with the images, hardening and manifests of a local run.

Beside engine.py, this is the only module that talks to Docker. `SwarmEngine` is a ContainerEngine: the pipeline, the
cache and batch hand it the same `ContainerSpec` a local run gets, and `run()` turns it into one service of one task
(`service_spec`, plain data), waits for the task, and removes the service. So a job's steps run in order, and the
jobs of a batch run at once on whichever nodes the scheduler picks.

- Placement: a task goes only to a node labelled with its image's content tag (`org.orchestrator.image.STACK=TAG`):
  `orchestrator images load FILE --label-node` sets the label where it loads; a manager that holds an image is
  labelled when a batch starts.
- Data: every folder a step sees lies under the shared root (`SharedVolume`): inputs outside it are copied in
  once, each mount is an anonymous volume of the shared volume's driver pointing at its own sub-folder (the local
  driver's bind on one node or on a file system every node mounts at the same path; `type=nfs`; any driver whose
  options take `{subpath}`), read-only inputs are mounted read-only by the driver's own option, and a writable mount
  outside the root is written under it and copied back. Outputs are committed on the manager by the pipeline.
- Hardening: read-only root, a /tmp tmpfs, every capability dropped, the host user, the memory, pids and largest-file
  limits, as locally. Swarm has no `--network none` for services: a batch's tasks join one internal overlay network
  (no gateway, no route out). Swarm on engines before API 1.46 cannot set no-new-privileges (README: Swarm).
- Time and faults: the orchestrator's clock enforces the timeout (it removes the service); a task whose node goes
  down or which a node rejects runs again elsewhere up to `retries` times, else the step fails naming the nodes.
"""

import contextlib
import hashlib
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from orchestrator.cache import parse_size
from orchestrator.engine import RunResult, _engine_call
from orchestrator.errors import EnvironmentProblem, UsageError

BATCH_LABEL = "org.orchestrator.batch"  # on services, networks and volumes: the batch they belong to
STEP_LABEL, JOB_LABEL = "org.orchestrator.step", "org.orchestrator.job"  # on services: what they run
IMAGE_LABEL = "org.orchestrator.image."  # node label prefix: + stack name, valued the stack image's content tag
POLL = 0.5  # seconds between looks at a task
DOWN_GRACE = 2.0  # a task's node seen down this long: the task is lost
PENDING_GIVE_UP = 30.0  # a task no node can take (every node that holds its image excluded or gone) fails then
JOB_MODE_API = (1, 43)  # engines from 24.0 remove a replicated-job's tasks with its service (moby#42789)
TERMINAL = {"complete", "failed", "shutdown", "rejected", "orphaned", "remove"}


def parse_volume_opts(text):
    """--volume-opt 'type=nfs;o=addr=10.0.0.5,rw;device=:/exports/orchestrator' -> {name: value} (';' separates the
    options, since NFS's `o` holds commas)."""
    opts = {}
    for part in str(text or "").split(";"):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--volume-opt {part!r}: give NAME=VALUE pairs separated by ';'")
        opts[name.strip()] = value.strip()
    return opts


def image_label(image):
    """('org.orchestrator.image.tf2', '96e2e1c8fc30') for 'orchestrator/tf2:96e2e1c8fc30'."""
    repo, _, tag = image.rpartition(":")
    return IMAGE_LABEL + repo.rsplit("/", 1)[-1], tag


@dataclass(frozen=True)
class SharedVolume:
    """Where a swarm batch's data lives: `root`, the manager's folder, and how each node reaches the same storage:
    a volume `driver` and its `options`. No options with the local driver: a bind of the same path on every node
    (one node, or a file system every node mounts at that path)."""

    root: Path
    driver: str = "local"
    options: tuple = ()  # (name, value) pairs

    def __post_init__(self):
        opts = dict(self.options)
        if self.driver != "local" and not any("{subpath}" in v for v in opts.values()):
            raise UsageError(f"--volume-driver {self.driver}: say where each mount's folder lies with {{subpath}} in "
                             "a --volume-opt value (e.g. 'path=/share/{subpath}'), and mount it read-only with "
                             "{mode} (ro or rw) where the driver takes a mode")
        if self.driver == "local" and opts and "device" not in opts:
            raise UsageError("--volume-opt: the local driver's options need device=... (the shared root as the "
                             "nodes mount it, e.g. device=:/exports/orchestrator with type=nfs)")

    def mount(self, source, target, read_only):
        """The service mount of host folder `source` (under root) at `target`: an anonymous volume of this driver
        pointing at the folder's own place, read-only by the driver's option (Swarm refuses ReadOnly on anonymous
        volumes); the engine removes it with the task's container."""
        rel = Path(source).resolve().relative_to(Path(self.root).resolve()).as_posix()
        opts = dict(self.options)
        if self.driver == "local":
            if not opts:
                opts = {"type": "none", "o": "bind", "device": str(Path(self.root).resolve())}
            opts["device"] = opts["device"].rstrip("/") + ("" if rel == "." else "/" + rel)
            if read_only:
                opts["o"] = f"{opts['o']},ro" if opts.get("o") else "ro"
        else:
            mode = "ro" if read_only else "rw"
            opts = {k: v.replace("{subpath}", "" if rel == "." else rel).replace("{mode}", mode)
                    for k, v in opts.items()}
        return {"Type": "volume", "Target": target,
                "VolumeOptions": {"DriverConfig": {"Name": self.driver, "Options": opts}}}

    def holds(self, path):
        root = Path(self.root).resolve()
        path = Path(path).resolve()
        return path == root or root in path.parents


def service_spec(spec, mounts, network, constraints, labels, job_mode):
    """The service (name and TaskTemplate, plain dicts of the Engine API) that runs ContainerSpec `spec` once, with
    `mounts` (service mounts, see SharedVolume.mount) in place of its binds."""
    tmpfs = [{"Type": "tmpfs", "Target": target,
              "TmpfsOptions": {"SizeBytes": parse_size(_tmpfs_size(options)), "Mode": 0o1777}}
             for target, options in (spec.tmpfs or {}).items()]
    container = {
        "Image": spec.image, "Command": list(spec.command),
        "Env": [f"{k}={v}" for k, v in sorted(spec.environment.items())],
        "User": spec.user or None, "Dir": spec.working_dir, "ReadOnly": bool(spec.read_only_root),
        "CapabilityDrop": list(spec.cap_drop), "Mounts": list(mounts) + tmpfs,
        "Labels": {"org.orchestrator.step": spec.name_hint, **spec.labels},
    }
    if spec.max_file_size:
        container["Ulimits"] = [{"Name": "fsize", "Soft": spec.max_file_size, "Hard": spec.max_file_size}]
    if "no-new-privileges" in spec.security_opt:
        container["Privileges"] = {"NoNewPrivileges": True}  # API 1.46 and later; older engines ignore it
    template = {
        "ContainerSpec": {k: v for k, v in container.items() if v is not None},
        "Resources": {"Limits": {"MemoryBytes": parse_size(spec.memory), "Pids": spec.pids_limit}},
        "RestartPolicy": {"Condition": "none", "MaxAttempts": 0},
        "Placement": {"Constraints": list(constraints)},
        "Networks": [{"Target": network}] if network else [],
    }
    mode = {"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}} if job_mode else {
        "Replicated": {"Replicas": 1}}
    return {"Name": f"orch-{spec.name_hint[:30]}-{uuid.uuid4().hex[:8]}".replace("_", "-"),
            "Labels": dict(labels), "TaskTemplate": template, "Mode": mode}


def _tmpfs_size(options):
    for part in options.split(","):
        if part.startswith("size="):
            return part[5:]
    return "64m"


class NodeLost(EnvironmentProblem):
    """A step's task lost its node (it left the swarm, or rejected the task) and no retry was left."""


class VolumeUnmountable(EnvironmentProblem):
    """Every node that got a step's task could not mount the shared volume (its driver, options or file system)."""


def _mount_failed(why):
    """Whether a task's error says a volume could not be mounted (the engine's words when it creates the container)."""
    text = str(why).lower()
    return "volume" in text and "mount" in text


class SwarmEngine:
    """A ContainerEngine whose runs are Swarm services (see the module's text). Images, builds and everything else
    are the local engine's (`base`, a manager of the swarm)."""

    stops_runs_on_close = False

    def __init__(self, base, volume, batch="adhoc", retries=2):
        self.base, self.volume, self.batch, self.retries = base, volume, batch, int(retries)
        self._shipped, self._lock = {}, threading.Lock()
        self._network = None
        self._services = set()
        self.cancelled = threading.Event()
        self.placements = []  # (job, step, node name) of every finished task: the batch summary's `nodes`

    def __getattr__(self, name):  # info, image, build, layers, prune_images, save, load, start, state, remove, ...
        return getattr(self.base, name)

    @property
    def api(self):
        return self.base.client.api

    def session(self, rw=(), ro=()):
        return contextlib.nullcontext(self)

    # -- the swarm -----------------------------------------------------------------------------------------------
    def swarm_info(self):
        info = self.api.info().get("Swarm") or {}
        if info.get("LocalNodeState") != "active":
            raise EnvironmentProblem("--swarm: this engine is not part of a swarm; make it a manager with "
                                     "`docker swarm init` (and join the workers), or run the batch without --swarm")
        if not info.get("ControlAvailable"):
            raise EnvironmentProblem("--swarm: this engine is a swarm worker; run the batch where a manager's engine "
                                     "answers (DOCKER_HOST)")
        return info

    def job_mode(self):
        version = tuple(int(x) for x in str(self.api.version().get("ApiVersion", "1.41")).split(".")[:2])
        return version >= JOB_MODE_API

    def nodes(self):
        """[{'id', 'name', 'state', 'availability', 'role', 'labels'}] of the swarm's nodes."""
        return [{"id": n["ID"], "name": (n.get("Description") or {}).get("Hostname", n["ID"][:12]),
                 "state": (n.get("Status") or {}).get("State"),
                 "availability": (n.get("Spec") or {}).get("Availability"),
                 "role": (n.get("Spec") or {}).get("Role"), "labels": (n.get("Spec") or {}).get("Labels") or {}}
                for n in self.api.nodes()]

    def place(self, refs):
        """Make sure a ready node is labelled for each image `refs`: this manager is labelled for the images it
        holds; an image no node holds is refused before any job starts."""
        me = self.swarm_info()["NodeID"]
        held = [ref for ref in refs if self.base.image(ref) is not None]
        label_node(self.api, me, held)
        for ref in refs:
            if not self._holders(*image_label(ref)):
                raise EnvironmentProblem(f"--swarm: no active node holds {ref}; load it on the nodes with "
                                         "`orchestrator images save` and `orchestrator images load FILE --label-node`")

    def network(self):
        """The batch's internal overlay network (made once): its tasks' only network, with no route out."""
        with self._lock:
            if self._network is None:
                name = f"orch-{self.batch}-{uuid.uuid4().hex[:6]}"
                self.api.create_network(name, driver="overlay", internal=True, attachable=False,
                                        labels={BATCH_LABEL: self.batch})
                self._network = name
            return self._network

    # -- data ----------------------------------------------------------------------------------------------------
    def _ship(self, source):
        """A copy of read-only host path `source` under the shared root (made once per batch), or itself when it
        lies there already."""
        if self.volume.holds(source):
            return Path(source)
        st = os.stat(source)
        key = hashlib.sha256(f"{Path(source).resolve()}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:20]
        with self._lock:
            if key not in self._shipped:
                dest = Path(self.volume.root) / "inputs" / key / Path(source).name
                if not dest.exists():
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    partial = dest.with_name(dest.name + ".partial")
                    shutil.rmtree(partial, ignore_errors=True)
                    if Path(source).is_dir():
                        shutil.copytree(source, partial, symlinks=True)
                    else:
                        shutil.copy2(source, partial)
                    partial.rename(dest)
                self._shipped[key] = dest
            return self._shipped[key]

    def _mounts(self, spec, scratch):
        """(service mounts, [(host folder written, its folder under the root)] to copy back) for spec's binds.
        Files are gathered, by the folder they are mounted into, in a folder of links under `scratch`."""
        mounts, back, files = [], [], {}
        for m in spec.mounts:
            if m.read_only:
                source = self._ship(m.source)
                if source.is_dir():
                    mounts.append(self.volume.mount(source, m.target, True))
                else:
                    files.setdefault(str(Path(m.target).parent), []).append((source, Path(m.target).name))
                continue
            source = Path(m.source)
            if not self.volume.holds(source):
                inside = scratch / f"rw-{len(back)}"
                inside.mkdir(parents=True)
                back.append((source, inside))
                source = inside
            mounts.append(self.volume.mount(source, m.target, False))
        for i, (target, entries) in enumerate(sorted(files.items())):
            folder = scratch / f"files-{i}"
            folder.mkdir(parents=True)
            for source, name in entries:
                try:
                    os.link(source, folder / name)
                except OSError:
                    shutil.copy2(source, folder / name)
            mounts.append(self.volume.mount(folder, target, True))
        return mounts, back

    # -- runs ----------------------------------------------------------------------------------------------------
    def run(self, spec, log=None, watch=None):
        """Run `spec` as a one-task service to its end; try again on another node when its node is lost."""
        scratch = Path(self.volume.root) / "mounts" / uuid.uuid4().hex[:12]
        lost = []  # (node name, why) of the tries that lost their node
        try:
            mounts, back = self._mounts(spec, scratch)
            key, tag = image_label(spec.image)
            while True:
                constraints = [f"node.labels.{key}=={tag}"] + [f"node.id!={node_id}" for node_id, _, _ in lost]
                try:
                    result, node = self._run_once(spec, mounts, constraints, log, watch)
                except NodeLost as exc:
                    if not lost:
                        raise
                    raise NodeLost(f"{exc}; before, " + "; ".join(f"{name}: {why}" for _, name, why in lost)) \
                        from None
                if result is not None:
                    for source, inside in back:
                        shutil.copytree(inside, source, dirs_exist_ok=True)
                    return result
                lost.append(node)
                others = self._holders(key, tag, exclude={node_id for node_id, _, _ in lost})
                if len(lost) > self.retries or not others:
                    raise self._lost(spec, lost, others)
                if log:
                    log(f"[{spec.name_hint}] node {node[1]} lost the task ({node[2]}); running it again elsewhere")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _holders(self, key, tag, exclude=()):
        """Names of the ready, active nodes labelled for image `key`=`tag`, but those in `exclude` (ids)."""
        with _engine_call("the swarm's nodes were listed"):
            return [n["name"] for n in self.nodes() if n["state"] == "ready" and n["availability"] == "active"
                    and n["labels"].get(key) == tag and n["id"] not in exclude]

    def _lost(self, spec, lost, others):
        """The error for a step whose tries all ended without an exit status: the shared volume's fault when every
        node said it could not mount it, else the lost nodes (and why no retry was left)."""
        tries = "; ".join(f"{name}: {why}" for _, name, why in lost)
        if all(_mount_failed(why) for _, _, why in lost):
            return VolumeUnmountable(
                f"{spec.name_hint}: the shared volume could not be mounted ({tries}); check --volume-driver and "
                "--volume-opt, and that every node can mount that file system")
        left = f"--retries {self.retries}" if others else "no other node holds its image"
        return NodeLost(f"{spec.name_hint}: its task ended without an exit status {len(lost)} times ({tries}); "
                        f"no retry left ({left})")

    def _run_once(self, spec, mounts, constraints, log, watch):
        """(RunResult, None), or (None, (node id, node name, why)) when the task lost its node."""
        if self.cancelled.is_set():
            raise EnvironmentProblem(f"{spec.name_hint}: the batch was interrupted")
        from orchestrator.batch import CURRENT

        labels = {BATCH_LABEL: self.batch, STEP_LABEL: spec.name_hint, JOB_LABEL: getattr(CURRENT, "job", None) or ""}
        body = service_spec(spec, mounts, self.network(), constraints, labels, self.job_mode())
        start = time.monotonic()
        with _engine_call(f"{spec.name_hint} was placed"):
            service = self.api.create_service(body["TaskTemplate"], name=body["Name"], labels=body["Labels"],
                                              mode=body["Mode"])["ID"]
        self._services.add(service)
        down_since, stopped = {}, None
        try:
            while True:
                if self.cancelled.is_set():
                    raise EnvironmentProblem(f"{spec.name_hint}: the batch was interrupted")
                with _engine_call(f"{spec.name_hint} ran"):
                    tasks = self.api.tasks(filters={"service": service})
                task = max(tasks, key=lambda t: t.get("CreatedAt", ""), default=None)
                status = (task or {}).get("Status") or {}
                state, node_id = status.get("State"), (task or {}).get("NodeID")
                if state == "complete" or state == "failed" and status.get("ContainerStatus", {}).get("ExitCode"):
                    code = int((status.get("ContainerStatus") or {}).get("ExitCode") or 0)
                    out, err = self._logs(service)
                    self.placements.append((labels[JOB_LABEL], spec.name_hint, self._node_name(node_id)))
                    return RunResult(code, out, err, time.monotonic() - start, stopped=stopped), None
                if state in TERMINAL:
                    return None, (node_id, self._node_name(node_id), status.get("Err") or state)
                if state == "pending" and "no suitable node" in (status.get("Err") or "") and \
                        time.monotonic() - start > PENDING_GIVE_UP:
                    raise NodeLost(f"{spec.name_hint}: no node of the swarm can take it ({status['Err']})")
                if node_id and state in ("assigned", "accepted", "preparing", "ready", "starting", "running"):
                    node = self._node(node_id)
                    if node is None or node.get("state") != "ready":
                        down_since.setdefault(node_id, time.monotonic())
                        if time.monotonic() - down_since[node_id] > DOWN_GRACE:
                            return None, (node_id, self._node_name(node_id), "the node is down")
                    else:
                        down_since.pop(node_id, None)
                if time.monotonic() - start > spec.timeout:
                    out, err = self._logs(service)
                    return RunResult(-1, out, err, time.monotonic() - start, timed_out=True), None
                if watch is not None and state == "running":
                    stopped = watch()
                    if stopped:
                        out, err = self._logs(service)
                        return RunResult(137, out, err, time.monotonic() - start, stopped=stopped), None
                time.sleep(POLL)
        finally:
            self._remove(service)

    def _node(self, node_id):
        with contextlib.suppress(Exception):
            n = self.api.inspect_node(node_id)
            return {"state": (n.get("Status") or {}).get("State"),
                    "name": (n.get("Description") or {}).get("Hostname")}
        return None

    def _node_name(self, node_id):
        node = self._node(node_id) if node_id else None
        return (node or {}).get("name") or (node_id or "no node")[:12]

    def _logs(self, service):
        def read(stdout):
            with contextlib.suppress(Exception):
                chunks = self.api.service_logs(service, stdout=stdout, stderr=not stdout, follow=False)
                return b"".join(chunks).decode("utf-8", "replace")
            return ""
        return read(True), read(False)

    def _remove(self, service):
        from docker.errors import NotFound

        with contextlib.suppress(NotFound):
            self.api.remove_service(service)
        self._services.discard(service)

    def close(self):
        """An interrupted batch: stop its runs and remove the services they still have, before the threads running
        them are waited for (the network and the copied inputs go when the engine's block ends)."""
        self.cancelled.set()
        for service in list(self._services):
            with contextlib.suppress(Exception):
                self._remove(service)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        """The batch's end: its services and network go, and so do the inputs it copied to the shared root."""
        self.cancelled.set()
        remove_batch(self.api, self.batch)
        for shipped in self._shipped.values():
            shutil.rmtree(shipped.parent, ignore_errors=True)
        return False


def remove_batch(api, batch, wait=30.0):
    """Remove the services and networks labelled for `batch` (a network stays in use a moment after its last
    task's service is removed: tried again until `wait` s)."""
    with contextlib.suppress(Exception):
        for service in api.services(filters={"label": f"{BATCH_LABEL}={batch}"}):
            with contextlib.suppress(Exception):
                api.remove_service(service["ID"])
    deadline = time.monotonic() + wait
    while True:
        try:
            networks = api.networks(filters={"label": f"{BATCH_LABEL}={batch}"})
        except Exception:
            return
        for network in networks:
            with contextlib.suppress(Exception):
                api.remove_network(network["Id"])
        if not networks or time.monotonic() > deadline:
            return
        time.sleep(0.5)


def running(api, batch):
    """{job: [{'step', 'node', 'state', 'seconds'}]} of the batch's services still in the swarm."""
    import datetime

    found = {}
    for service in api.services(filters={"label": f"{BATCH_LABEL}={batch}"}):
        labels = service["Spec"].get("Labels") or {}
        tasks = api.tasks(filters={"service": service["ID"]})
        task = max(tasks, key=lambda t: t.get("CreatedAt", ""), default={})
        node = "-"
        if task.get("NodeID"):
            with contextlib.suppress(Exception):
                node = api.inspect_node(task["NodeID"])["Description"]["Hostname"]
        created = datetime.datetime.fromisoformat(service["CreatedAt"][:26].rstrip("Z")).replace(
            tzinfo=datetime.timezone.utc)
        found.setdefault(labels.get(JOB_LABEL, "?"), []).append(
            {"step": labels.get(STEP_LABEL, "?"), "node": node, "state": (task.get("Status") or {}).get("State", "new"),
             "seconds": (datetime.datetime.now(datetime.timezone.utc) - created).total_seconds()})
    return found


def label_node(api, node_id, refs):
    """Label swarm node `node_id` (through manager `api`) with the content tags of images `refs`."""
    if not refs:
        return
    for _ in range(5):  # another process may update the node between our read and write
        node = api.inspect_node(node_id)
        spec = dict(node["Spec"])
        labels = dict(spec.get("Labels") or {})
        wanted = dict(image_label(ref) for ref in refs)
        if all(labels.get(k) == v for k, v in wanted.items()):
            return
        spec["Labels"] = {**labels, **wanted}
        try:
            api.update_node(node_id, node["Version"]["Index"], spec)
            return
        except Exception as exc:  # an out-of-date version: read it again
            if "update out of sequence" not in str(exc):
                raise


def manager_api(url):
    """The low-level API of the engine at `url` (--manager: a swarm manager's engine)."""
    import docker
    from docker.errors import DockerException

    try:
        client = docker.DockerClient(base_url=str(url), timeout=60)
        client.ping()
    except DockerException as exc:
        raise EnvironmentProblem(f"--manager {url}: no Docker engine answers there ({exc})") from None
    return client.api


def label_loaded(engine_api, refs, manager_api=None):
    """After `images load --label-node`: label the node of the engine that loaded `refs`, through that engine when
    it is a manager, else through `manager_api`. Returns the node's hostname."""
    info = engine_api.info()
    swarm = info.get("Swarm") or {}
    if swarm.get("LocalNodeState") != "active":
        raise EnvironmentProblem("--label-node: this engine is not part of a swarm (join it first)")
    api = engine_api if swarm.get("ControlAvailable") else manager_api
    if api is None:
        raise UsageError("--label-node: this engine is a swarm worker; name a manager's engine with --manager URL "
                         "(e.g. tcp://manager:2375 or ssh://user@manager)")
    label_node(api, swarm["NodeID"], refs)
    return info.get("Name", swarm["NodeID"][:12])


def batch_id(jobs_file):
    """A batch's name in the swarm (its services' and network's label, its status file): from its jobs file."""
    return hashlib.sha256(str(Path(jobs_file).resolve()).encode()).hexdigest()[:12]


def status_path(volume, jobs_file):
    return Path(volume.root) / "batches" / f"{batch_id(jobs_file)}.json"
