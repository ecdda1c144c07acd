"""`orchestrator batch --swarm` on real Swarm clusters made here: the host's engine as the manager of a one-node
swarm, then two more nodes (Docker-in-Docker containers of tests/cluster/node on a private bridge network, which
mount the shared root over sshfs from the file server of tests/cluster/share) that get the stack images through
`images save` / `images load --label-node` and run a batch between them, one of them stopped mid-batch. Everything made is removed at the end: the swarm is left, nodes, network and volumes removed.

The tests of this file run in order in one process (pytest-xdist --dist loadfile): they share the cluster."""

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from clihelp import REPO, cli, cli_env, last_line, manifest

sys.path.insert(0, str(REPO / "tests" / "cluster"))
from swarm_cluster import NODE_LABEL, Cluster, docker_cli, wait  # noqa: E402

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster(engine, stack_images, tmp_path_factory):
    # the shared root: a folder every node sees at the same path (the manager's own; the two-node test's nodes mount
    # it over sshfs from the cluster's file server)
    root = Path(tmp_path_factory.mktemp("swarm-shared"))
    try:
        made = Cluster(engine, root).up()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        yield made
    finally:
        made.down()
        assert (engine.client.api.info().get("Swarm") or {}).get("LocalNodeState") == "inactive"
        assert not engine.client.api.networks(filters={"label": NODE_LABEL})
        assert not engine.client.api.containers(all=True, filters={"label": NODE_LABEL})


def _jobs(tmp_path, model, names, extra=""):
    jobs = tmp_path / "jobs.yaml"
    body = "\n".join(f"  - {{name: {n}, output_dir: out/{n}}}" for n in names)
    jobs.write_text(f"defaults: {{from: keras, input: {model}}}\njobs:\n{body}\n{extra}")
    return jobs


def _no_batch_left(api, jobs):
    from orchestrator import swarm

    label = f"{swarm.BATCH_LABEL}={swarm.batch_id(jobs)}"
    return not api.services(filters={"label": label}) and not api.networks(filters={"label": label})


def test_one_node_swarm_batch_verifies_and_leaves_nothing(cluster, samples, tmp_path):
    model = samples[("keras", "cnn")] / "model.h5"
    jobs = _jobs(tmp_path, model, ["a", "b"], "  - {name: broken, input: missing.h5, output_dir: out/broken}\n")
    proc = cli("batch", jobs, "--swarm", "--shared-dir", cluster.root, "--max-concurrent", "2", "--json")
    assert proc.returncode == 6, proc.stderr[-3000:]
    assert last_line(proc) == "orchestrator: error: 1 of 3 jobs failed: broken"
    doc = json.loads(proc.stdout)
    by = {r["name"]: r for r in doc["jobs"]}
    for name in ("a", "b"):
        assert by[name]["passed"] and by[name]["verified"], by[name]
        assert by[name]["nodes"] == [cluster.manager]  # the manager holds the images: it was labelled for them
        m = manifest(tmp_path / "out" / name)
        assert m["verification"]["passed"] is True and list(m["artifacts"]) == ["model.tflite"]
        assert all(s["worker"] is False for s in m["steps"])
    assert by["broken"]["exit_code"] == 2 and not (tmp_path / "out" / "broken").exists()
    assert _no_batch_left(cluster.api, jobs)
    assert not list((cluster.root / "work").iterdir()) and not list((cluster.root / "mounts").iterdir())
    # the status of a finished batch: every job's end
    status = cli("batch", jobs, "--swarm", "--status", "--shared-dir", cluster.root)
    assert status.returncode == 0, status.stderr
    assert status.stdout.strip().splitlines()[-1] == "1 failed, 2 passed; finished"


def _session_containers(api, session):
    return api.containers(filters={"label": [f"org.orchestrator.session={session}", "com.docker.swarm.service.id"]})


def test_swarm_task_hardening_status_and_interrupt(cluster, keras_mobilenet, tmp_path):
    """A live task's container carries the hardening; --status shows it running; SIGINT removes the batch's
    services and network and leaves no output."""
    import docker

    jobs = _jobs(tmp_path, keras_mobilenet, ["mobile"])
    session = f"e2e-swarm-{uuid.uuid4().hex[:8]}"
    proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "batch", str(jobs), "--swarm", "--shared-dir",
                             str(cluster.root), "--memory", "3g"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=cli_env(ORCHESTRATOR_SESSION=session),
                            # a shell without job control starts background jobs with SIGINT ignored: not this one
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        found = wait("the step's task", lambda: _session_containers(cluster.api, session), timeout=180)
        container = docker.from_env().containers.get(found[0]["Id"])
        host, config = container.attrs["HostConfig"], container.attrs["Config"]
        assert host["ReadonlyRootfs"] and host["CapDrop"] == ["ALL"] and not host["Privileged"]
        assert host["Memory"] == 3 << 30 and host["PidsLimit"] == 4096
        assert [u["Name"] for u in host["Ulimits"] or []] == ["fsize"]
        assert config["User"] == f"{os.getuid()}:{os.getgid()}"
        tmpfs = [m for m in host["Mounts"] if m["Type"] == "tmpfs"]
        assert tmpfs == [{"Type": "tmpfs", "Target": "/tmp", "TmpfsOptions": {"SizeBytes": 512 << 20, "Mode": 1023}}]
        assert not any("docker.sock" in str(m) for m in host["Mounts"])
        # the only network: the batch's internal overlay (no gateway, no route out)
        networks = container.attrs["NetworkSettings"]["Networks"]
        assert len(networks) == 1, networks
        net = cluster.api.inspect_network(next(iter(networks)))
        assert net["Internal"] is True and net["Driver"] == "overlay"
        code = container.exec_run(["python", "-c", "import socket; s = socket.socket(); s.settimeout(3); "
                                   f"s.connect(('{cluster.gateway}', 2377))"])
        assert code.exit_code != 0 and b"unreachable" in code.output, code.output
        # Swarm on this engine cannot set no-new-privileges (API < 1.46, README: Swarm): say exactly that
        api_version = tuple(int(x) for x in cluster.api.version()["ApiVersion"].split("."))
        if api_version < (1, 46):
            assert not host["SecurityOpt"] or "no-new-privileges" not in str(host["SecurityOpt"])
        else:
            assert "no-new-privileges" in str(host["SecurityOpt"])
        status = cli("batch", jobs, "--swarm", "--status", "--shared-dir", cluster.root)
        assert status.returncode == 0, status.stderr
        row = next(ln for ln in status.stdout.splitlines() if ln.startswith("mobile"))
        assert " running " in row and f"on {cluster.manager} (running" in row, status.stdout
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert len([ln for ln in err.splitlines() if ln.startswith("orchestrator:")]) == 1
    assert wait("the batch's services and network gone", lambda: _no_batch_left(cluster.api, jobs), timeout=60)
    assert not (tmp_path / "out" / "mobile").exists()
    assert not [p for p in (tmp_path / "out").glob(".*partial*")] if (tmp_path / "out").exists() else True


def test_swarm_timeout_removes_the_service(cluster, keras_mobilenet, tmp_path):
    jobs = _jobs(tmp_path, keras_mobilenet, ["slow"])
    proc = cli("batch", jobs, "--swarm", "--shared-dir", cluster.root, "--timeout", "4", "--json")
    assert proc.returncode == 6, proc.stderr[-2000:]
    record = json.loads(proc.stdout)["jobs"][0]
    assert record["exit_code"] == 3 and "timed out after 4 s" in record["error"], record
    assert _no_batch_left(cluster.api, jobs) and not (tmp_path / "out" / "slow").exists()


def test_a_shared_volume_no_node_can_mount_fails_the_job_in_one_line(cluster, samples, tmp_path):
    """--volume-opt for an NFS export nobody serves (and, on this machine, a kernel with no NFS client): the engine
    rejects the task at the mount; the job fails at once saying the shared volume could not be mounted, with the
    engine's reason, and leaves nothing."""
    model = samples[("keras", "cnn")] / "model.h5"
    jobs = _jobs(tmp_path, model, ["nfs"])
    proc = cli("batch", jobs, "--swarm", "--shared-dir", cluster.root, "--json",
               "--volume-opt", f"type=nfs;o=addr=127.0.0.1,rw,port=1,soft,timeo=10,retrans=1;device=:{cluster.root}")
    assert proc.returncode == 6, proc.stderr[-2000:]
    record = json.loads(proc.stdout)["jobs"][0]
    assert "the shared volume could not be mounted" in record["error"] and "--volume-opt" in record["error"], record
    assert "mount" in record["error"].split("mounted (", 1)[1], record  # the engine's own words follow
    assert not (tmp_path / "out" / "nfs").exists() and _no_batch_left(cluster.api, jobs)


@pytest.mark.cluster
def test_two_node_swarm_spreads_jobs_and_survives_a_lost_node(cluster, samples, tmp_path):
    """Two worker nodes get the tf2 image by save/load, the manager is drained: six jobs spread over both nodes and
    every output verifies; then a node stopped mid-batch: the batch completes, or names the jobs that failed. The
    nodes reach the shared root over a network file system (sshfs from the cluster's file server; this kernel has no
    NFS client), never a bind of the host's folder; the NFS volume options are tried up to the mount."""
    from orchestrator import swarm

    nodes = cluster.add_nodes(2)
    for name in nodes:
        assert cluster.root_fstype(name) == "fuse.sshfs", name
        binds = json.loads(docker_cli("inspect", "-f", "{{json .Mounts}}", name))
        assert not [m for m in binds if m["Type"] == "bind" and Path(m["Source"]) == cluster.root], binds
    archive = tmp_path / "stacks.tar"
    proc = cli("images", "save", archive, "tf2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name, ip in nodes.items():
        proc = cli("images", "load", archive, "--label-node", "--manager", "unix:///var/run/docker.sock",
                   env=cli_env(DOCKER_HOST=f"tcp://{ip}:2375"))
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert f"labelled node {name} for orchestrator/tf2:" in proc.stdout

    # NFS as far as this machine goes: the orchestrator's volume for --volume-opt 'type=nfs;...' (pointed at the file
    # server, which serves no NFS), made on a node by its local driver, fails at the mount itself
    shared = swarm.SharedVolume(cluster.root, "local", tuple(swarm.parse_volume_opts(
        f"type=nfs;o=addr={cluster.share_ip},rw,nfsvers=4;device=:{cluster.root}").items()))
    opts = shared.mount(cluster.root / "work", "/data", True)["VolumeOptions"]["DriverConfig"]["Options"]
    node_cli = ("-H", f"tcp://{nodes[sorted(nodes)[0]]}:2375")
    volume = docker_cli(*node_cli, "volume", "create", *[x for k, v in opts.items() for x in ("--opt", f"{k}={v}")])
    try:
        tf2 = docker_cli(*node_cli, "images", "--format", "{{.Repository}}:{{.Tag}}", "orchestrator/tf2").split()[0]
        mounted = subprocess.run(["docker", *node_cli, "run", "--rm", "-v", f"{volume}:/data", "--entrypoint", "true",
                                  tf2], capture_output=True, text=True, timeout=300)
    finally:
        docker_cli(*node_cli, "volume", "rm", "-f", volume, check=False)
    assert mounted.returncode != 0 and "error while mounting volume" in mounted.stderr, mounted.stderr
    assert f"mount :{cluster.root}/work:" in mounted.stderr and f"addr={cluster.share_ip}" in mounted.stderr
    if "\tnfs\n" not in Path("/proc/filesystems").read_text():  # this machine: the kernel knows no nfs
        assert "no such device" in mounted.stderr, mounted.stderr

    docker_cli("node", "update", "--availability", "drain", cluster.manager)
    model = samples[("keras", "cnn")] / "model.h5"
    names = [f"j{i}" for i in range(6)]
    jobs = _jobs(tmp_path, model, names)
    proc = cli("batch", jobs, "--swarm", "--shared-dir", cluster.root, "--max-concurrent", "4", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["workers"] == 4 and doc["passed"]
    used = {node for r in doc["jobs"] for node in r["nodes"]}
    assert used == set(nodes), used  # spread over both workers, none on the drained manager
    for name in names:
        assert manifest(tmp_path / "out" / name)["verification"]["passed"] is True
    assert _no_batch_left(cluster.api, jobs)

    # a node stopped mid-batch
    jobs.write_text(jobs.read_text().replace("defaults: {", "defaults: {force: true, "))
    victim = sorted(nodes)[1]
    batch = subprocess.Popen([sys.executable, "-m", "orchestrator", "batch", str(jobs), "--swarm", "--shared-dir",
                              str(cluster.root), "--max-concurrent", "4", "--json", "--retries", "2"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_env(),
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        wait(f"a task on {victim}", lambda: any(
            t["Status"]["State"] == "running" and cluster.api.inspect_node(t["NodeID"])["Description"]["Hostname"]
            == victim for t in cluster.api.tasks(filters={"desired-state": "running"})), timeout=180, every=0.3)
        docker_cli("kill", victim)
        out, err = batch.communicate(timeout=900)
    finally:
        if batch.poll() is None:
            batch.kill()
    doc = json.loads(out)
    assert batch.returncode in (0, 6), err[-3000:]
    for record in doc["jobs"]:
        if record["passed"]:
            assert manifest(tmp_path / "out" / record["name"])["verification"]["passed"] is True
        else:  # reported, naming the node it lost
            assert victim in record["error"], record
    assert "lost the task" in err or batch.returncode == 6
    assert _no_batch_left(cluster.api, jobs)
