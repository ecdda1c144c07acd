#!/bin/sh
# Re-resolve the TF1 stack's lock files (images/tf1/{build-requirements,requirements,od-api}.lock) inside the
# stack's own environment: Debian bullseye, python2.7, pip 20.3.4 (no Python 2.7 exists on the host).
# Needs the bullseye base image (`orchestrator images base --suite bullseye`) and network for pip.
# CA bundle: $LOCK_CA_BUNDLE, else SSL_CERT_FILE / REQUESTS_CA_BUNDLE / PIP_CERT; index: $PIP_INDEX_URL if set.
set -eu
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CA=${LOCK_CA_BUNDLE:-${SSL_CERT_FILE:-${REQUESTS_CA_BUNDLE:-${PIP_CERT:-/dev/null}}}}
docker run --rm -e PIP_INDEX_URL="${PIP_INDEX_URL:-}" \
    -v "$ROOT/images/tf1:/stack" -v "$ROOT/scripts:/scripts:ro" -v "$CA:/ca.crt:ro" \
    orchestrator/debian:bullseye sh /scripts/lock-tf1-inside.sh
echo "lock: wrote $ROOT/images/tf1/*.lock"
