"""A Swarm cluster on one machine, for the e2e test (tests/e2e/test_e2e_swarm.py) and the bench (bench/swarm.py):
the host's engine as the manager, advertising on a private bridge network, and worker nodes that are
Docker-in-Docker containers of the node image beside this file (the project's Debian base and Debian's docker.io;
no registry). The shared root is bind-mounted into every node at its own path, so the default shared volume (a bind
of the same path on each node) reaches it everywhere."""

import os
import subprocess
import time
import uuid
from pathlib import Path


NODE_IMAGE = "orchestrator/cluster-node"
NODE_LABEL = "org.orchestrator.e2e-cluster"


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
        self.engine, self.api, self.root = engine, engine.client.api, Path(root)
        self.name = f"orch-e2e-{uuid.uuid4().hex[:6]}"
        self.nodes = {}  # name -> ip
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
        """Start `count` node containers (shared root bind-mounted at the same path) and join them as workers."""
        image = self.node_image()
        token = docker_cli("swarm", "join-token", "-q", "worker")
        for i in range(1, count + 1):
            name = f"{self.name}-node{i}"
            docker_cli("run", "-d", "--name", name, "--hostname", name, "--network", self.name, "--label", NODE_LABEL,
                    # everything --privileged grants but CAP_SYS_RESOURCE, which the host's engine may lack itself
                    "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE", "--security-opt", "seccomp=unconfined",
                    "--security-opt", "apparmor=unconfined", "--security-opt", "systempaths=unconfined",
                    "--device-cgroup-rule", "a *:* rwm", "-v", "/sys/fs/cgroup:/sys/fs/cgroup",
                    "-v", f"{self.root}:{self.root}", image, f"--cgroup-parent=/{name}")
            self.nodes[name] = docker_cli("inspect", "-f",
                                       f'{{{{(index .NetworkSettings.Networks "{self.name}").IPAddress}}}}', name)
        for name, ip in self.nodes.items():
            wait(f"{name}'s engine", lambda: subprocess.run(["docker", "-H", f"tcp://{ip}:2375", "info"],
                                                             capture_output=True).returncode == 0, timeout=90)
            docker_cli("-H", f"tcp://{ip}:2375", "swarm", "join", "--token", token, f"{self.gateway}:2377")
        wait("the nodes ready", lambda: sum(1 for n in self.api.nodes() if n["Status"]["State"] == "ready"
                                             and n["Description"]["Hostname"] in self.nodes) == count)
        return self.nodes

    def node_image(self):
        """The node image, built from the project's Debian base and Debian's docker.io (no registry)."""
        import hashlib

        from orchestrator import images

        folder = Path(__file__).resolve().parent / "node"
        digest = hashlib.sha256()
        for path in sorted(folder.iterdir()):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
        tag = f"{NODE_IMAGE}:{digest.hexdigest()[:12]}"
        if self.engine.image(tag) is None:
            self.engine.build(folder, tag, buildargs={"BASE_IMAGE": images.base_ref("bookworm")},
                              labels={NODE_LABEL: "1"})
            self.engine.prune_images({NODE_LABEL: "1"})
        return tag

    def down(self):
        for name in self.nodes:
            docker_cli("rm", "-f", "-v", name, check=False)
        if self.created_swarm:
            docker_cli("swarm", "leave", "--force", check=False)
        docker_cli("network", "rm", self.name, check=False)
