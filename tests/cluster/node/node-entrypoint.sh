#!/bin/sh
# Start the node's engine: its own /var/lib/docker (a volume, so overlay2 works), answering on its socket and, on the
# test's private bridge network only, on TCP 2375. Swarm tasks use the node's local images without asking a registry.
set -eu
export DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then  # cgroup v2: leave the root group to the node's containers
    mkdir -p /sys/fs/cgroup/init
    xargs -rn1 < /sys/fs/cgroup/cgroup.procs > /sys/fs/cgroup/init/cgroup.procs 2>/dev/null || :
    sed -e 's/ / +/g' -e 's/^/+/' < /sys/fs/cgroup/cgroup.controllers > /sys/fs/cgroup/cgroup.subtree_control || :
fi
exec dockerd --host=unix:///var/run/docker.sock --host=tcp://0.0.0.0:2375 --tls=false --storage-driver=overlay2 "$@"
