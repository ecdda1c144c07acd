"""A Swarm cluster on one machine, for the e2e test (tests/e2e/test_e2e_swarm.py) and the bench (bench/swarm.py):
the host's engine as the manager, advertising on a private bridge network, and worker nodes that are
Docker-in-Docker containers of the node image beside this file (the project's Debian base and Debian's docker.io;
no registry).

The shared root travels over a network file system, as it would between machines: a file server (the share image
beside this file: Debian's openssh-server, SFTP only) on the same bridge network bind-mounts the host's folder, and
every node mounts that export with sshfs (FUSE) at the same path before its engine starts, so the default shared
volume (a bind of the same path on each node) reaches it everywhere. The manager, the host's engine, uses the host
folder itself. (NFS is what a site would use, but this machine's kernel has no NFS client; FUSE it has.) The keys are
made when the server starts and removed with the cluster: none is in an image."""

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path


NODE_IMAGE = "orchestrator/cluster-node"
SHARE_IMAGE = "orchestrator/cluster-share"
NODE_LABEL = "org.orchestrator.e2e-cluster"
# sshfs 3.7 (Debian bookworm) on the nodes: no directory cache and no kernel attribute or name cache, so that what the
# manager or another node wrote is seen at once (file contents are never kept across opens without kernel_cache)
SSHFS_OPTIONS = ("allow_other,dir_cache=no,attr_timeout=0,entry_timeout=0,negative_timeout=0,reconnect,"
                 "ServerAliveInterval=15,ServerAliveCountMax=3")


def docker_cli(*args, check=True, env=None, timeout=600):
    proc = subprocess.run(["docker", *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"docker {' '.join(map(str, args))}: {proc.stderr[-2000:]}")
    return proc.stdout.strip()


def wait(what, predicate, timeout=120.0, every=0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


class Cluster:
    """The host's engine as a swarm manager advertising on a private bridge network, and nodes added on demand."""

    def __init__(self, engine, root):
        # the resolved path: the orchestrator binds the resolved root on every node
        self.engine, self.api, self.root = engine, engine.client.api, Path(root).resolve()
        self.name = f"orch-e2e-{uuid.uuid4().hex[:6]}"
        self.nodes = {}  # name -> ip
        self.share = self.share_ip = None  # the file server's container and address, once started
        self.keys = None  # the folder of the keys made for it
        self.created_swarm = False

    def up(self):
        state = (self.api.info().get("Swarm") or {}).get("LocalNodeState")
        if state != "inactive":
            raise RuntimeError("the Docker engine is already part of a swarm; this test makes and leaves its own "
                        "(docker swarm leave --force first)")
        docker_cli("network", "create", "--driver", "bridge", "--label", NODE_LABEL, self.name)
        self.gateway = docker_cli("network", "inspect", self.name, "-f", "{{(index .IPAM.Config 0).Gateway}}")
        docker_cli("swarm", "init", "--advertise-addr", self.gateway)
        self.created_swarm = True
        self.manager = self.api.info()["Name"]
        return self

    def add_nodes(self, count):
        """Start `count` node containers, each mounting the shared root from the file server with sshfs at the same
        path (no bind of the host's folder), and join them as workers."""
        image = self.node_image()
        source = self.start_share()
        token = docker_cli("swarm", "join-token", "-q", "worker")
        for i in range(1, count + 1):
            self.start_node(f"{self.name}-node{i}", image, source)
        for name, ip in self.nodes.items():
            self.wait_node(name, ip)
            docker_cli("-H", f"tcp://{ip}:2375", "swarm", "join", "--token", token, f"{self.gateway}:2377")
        wait("the nodes ready", lambda: sum(1 for n in self.api.nodes() if n["Status"]["State"] == "ready"
                                             and n["Description"]["Hostname"] in self.nodes) == count)
        return self.nodes

    def start_node(self, name, image, source):
        """Start node container `name`; its entrypoint mounts `source` at the root with sshfs, then starts dockerd."""
        docker_cli("create", "--name", name, "--hostname", name, "--network", self.name, "--label", NODE_LABEL,
                   # everything --privileged grants but CAP_SYS_RESOURCE, which the host's engine may lack itself
                   "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE", "--security-opt", "seccomp=unconfined",
                   "--security-opt", "apparmor=unconfined", "--security-opt", "systempaths=unconfined",
                   "--device-cgroup-rule", "a *:* rwm", "-v", "/sys/fs/cgroup:/sys/fs/cgroup",
                   "--device", "/dev/fuse", "-e", f"SHARE_SOURCE={source}", "-e", f"SHARE_TARGET={self.root}",
                   "-e", f"SHARE_OPTIONS={SSHFS_OPTIONS}", image, f"--cgroup-parent=/{name}")
        self.nodes[name] = None
        docker_cli("cp", f"{self.keys / 'node'}/.", f"{name}:/etc/cluster-share/")
        docker_cli("start", name)
        self.nodes[name] = self._ip(name)
        return self.nodes[name]

    def wait_node(self, name, ip):
        """Wait for node `name`'s engine; refuse it unless its shared root is the server's sshfs mount."""
        wait(f"{name}'s engine", lambda: self._up(name) and subprocess.run(
            ["docker", "-H", f"tcp://{ip}:2375", "info"], capture_output=True).returncode == 0, timeout=150)
        fstype = self.root_fstype(name)
        if fstype != "fuse.sshfs":
            raise AssertionError(f"{name}: {self.root} is {fstype or 'not a mount'}, not the server's sshfs")

    def start_share(self):
        """Start the file server (once): keys made now (a host key, and the nodes' client key, which it authorizes),
        the host's shared root bind-mounted at its own path, SFTP as the host user (root when the test runs as
        root). Returns the sshfs source the nodes mount, `user@ip:root`."""
        uid, gid = os.getuid(), os.getgid()
        user = "root" if uid == 0 else "share"
        if self.share:
            return f"{user}@{self.share_ip}:{self.root}"
        image = self.share_image()
        self.keys = Path(tempfile.mkdtemp(prefix="orch-cluster-keys-"))
        for folder in ("share", "node"):
            (self.keys / folder).mkdir()
        # ssh-keygen of the server image (Debian's openssh), so the host needs no ssh; the files go to the test user
        docker_cli("run", "--rm", "--network", "none", "--entrypoint", "sh", "-v", f"{self.keys}:/keys", image, "-c",
                   "ssh-keygen -q -t ed25519 -N '' -C cluster-share -f /keys/share/host_key"
                   " && ssh-keygen -q -t ed25519 -N '' -C cluster-node -f /keys/node/key"
                   f" && chown -R {uid}:{gid} /keys")
        shutil.copyfile(self.keys / "node" / "key.pub", self.keys / "share" / "authorized_keys")
        name = f"{self.name}-share"
        docker_cli("create", "--name", name, "--hostname", name, "--network", self.name, "--label", NODE_LABEL,
                   "-e", f"SHARE_UID={uid}", "-e", f"SHARE_GID={gid}", "-v", f"{self.root}:{self.root}", image)
        self.share = name
        docker_cli("cp", f"{self.keys / 'share'}/.", f"{name}:/etc/cluster-share/")
        docker_cli("start", name)
        wait("the file server listening", lambda: self._up(name) and "Server listening on" in subprocess.run(
            ["docker", "logs", name], capture_output=True, text=True).stderr, timeout=60)
        self.share_ip = self._ip(name)
        host_key = " ".join((self.keys / "share" / "host_key.pub").read_text().split()[:2])
        (self.keys / "node" / "known_hosts").write_text(f"{self.share_ip} {host_key}\n")
        os.unlink(self.keys / "node" / "key.pub")
        return f"{user}@{self.share_ip}:{self.root}"

    def root_fstype(self, name):
        """The type of the file system mounted at the shared root in node container `name` ('' when none is)."""
        return docker_cli("exec", name, "findmnt", "-n", "-o", "FSTYPE", "--mountpoint", self.root, check=False)

    def _ip(self, name):
        return docker_cli("inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{self.name}").IPAddress}}}}', name)

    def _up(self, name):
        """True while container `name` runs; its log in the error once it stopped."""
        if docker_cli("inspect", "-f", "{{.State.Running}}", name) == "true":
            return True
        logs = subprocess.run(["docker", "logs", "--tail", "30", name], capture_output=True, text=True)
        raise AssertionError(f"{name} stopped:\n{logs.stdout}{logs.stderr}")

    def node_image(self):
        """The node image, built from the project's Debian base and Debian's docker.io and sshfs (no registry)."""
        return self._image("node", NODE_IMAGE)

    def share_image(self):
        """The file server's image, built from the project's Debian base and Debian's openssh-server."""
        return self._image("share", SHARE_IMAGE)

    def _image(self, folder, repository):
        import hashlib

        from orchestrator import images

        folder = Path(__file__).resolve().parent / folder
        digest = hashlib.sha256()
        for path in sorted(folder.iterdir()):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
        tag = f"{repository}:{digest.hexdigest()[:12]}"
        if self.engine.image(tag) is None:
            self.engine.build(folder, tag, buildargs={"BASE_IMAGE": images.base_ref("bookworm")},
                              labels={NODE_LABEL: "1"})
            self.engine.prune_images({NODE_LABEL: "1"})
        return tag

    def down(self):
        for name in self.nodes:
            docker_cli("rm", "-f", "-v", name, check=False)
        if self.share:  # after the nodes: their mounts go with them
            docker_cli("rm", "-f", "-v", self.share, check=False)
        if self.created_swarm:
            docker_cli("swarm", "leave", "--force", check=False)
        docker_cli("network", "rm", self.name, check=False)
        if self.keys:
            shutil.rmtree(self.keys, ignore_errors=True)
