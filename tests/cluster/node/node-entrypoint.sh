#!/bin/sh
# Start the node's engine: its own /var/lib/docker (a volume, so overlay2 works), answering on its socket and, on the
# test's private bridge network only, on TCP 2375. Swarm tasks use the node's local images without asking a registry.
# With SHARE_SOURCE (user@server:path), the cluster's shared root is first mounted at SHARE_TARGET with sshfs
# (SHARE_OPTIONS; the key and known_hosts the test made are in /etc/cluster-share): no engine without it.
set -eu
export DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1
if [ -n "${SHARE_SOURCE:-}" ]; then
    chmod 600 /etc/cluster-share/key
    mkdir -p "$SHARE_TARGET"
    tries=0
    until sshfs "$SHARE_SOURCE" "$SHARE_TARGET" -o "$SHARE_OPTIONS" -o IdentityFile=/etc/cluster-share/key \
            -o UserKnownHostsFile=/etc/cluster-share/known_hosts -o StrictHostKeyChecking=yes -o BatchMode=yes; do
        tries=$((tries + 1))
        if [ "$tries" -ge 60 ]; then
            echo "node-entrypoint: sshfs $SHARE_SOURCE $SHARE_TARGET failed $tries times; no engine" >&2
            exit 1
        fi
        sleep 1
    done
    echo "node-entrypoint: $SHARE_SOURCE mounted at $SHARE_TARGET" >&2
fi
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then  # cgroup v2: leave the root group to the node's containers
    mkdir -p /sys/fs/cgroup/init
    xargs -rn1 < /sys/fs/cgroup/cgroup.procs > /sys/fs/cgroup/init/cgroup.procs 2>/dev/null || :
    sed -e 's/ / +/g' -e 's/^/+/' < /sys/fs/cgroup/cgroup.controllers > /sys/fs/cgroup/cgroup.subtree_control || :
fi
exec dockerd --host=unix:///var/run/docker.sock --host=tcp://0.0.0.0:2375 --tls=false --storage-driver=overlay2 "$@"
