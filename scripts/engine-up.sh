#!/bin/sh
# Install (Debian's docker.io + debootstrap) and start a Docker engine on a Debian host where none answers.
# Idempotent: does nothing when `docker info` already answers. Needs root for the install and start.
set -eu
if docker info >/dev/null 2>&1; then
    echo "engine: a Docker engine already answers"; exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "engine: no Docker engine answers and this is not root; start dockerd yourself" >&2; exit 5
fi
need=""
command -v dockerd >/dev/null 2>&1 || need="$need docker.io"
command -v debootstrap >/dev/null 2>&1 || need="$need debootstrap"
if [ -n "$need" ]; then
    echo "engine: installing$need from the machine's Debian mirror"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need ca-certificates iptables >/dev/null
fi
LOG=${DOCKERD_LOG:-/var/log/dockerd.log}
echo "engine: starting dockerd (log: $LOG)"
# a swarm task takes the local image (no registry is asked for it; air-gapped sites have none)
DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 nohup dockerd >"$LOG" 2>&1 &
i=0
until docker info >/dev/null 2>&1; do
    i=$((i + 1))
    if [ $i -gt 60 ]; then echo "engine: dockerd did not answer within 60 s; see $LOG" >&2; tail -5 "$LOG" >&2; exit 5; fi
    sleep 1
done
echo "engine: dockerd is up ($(docker version --format '{{.Server.Version}}'))"
