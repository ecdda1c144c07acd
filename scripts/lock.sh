#!/bin/sh
# Re-resolve images/<stack>/requirements.lock from requirements.in, with sha256 hashes for every artifact.
# Resolution runs against the package index of the environment (PIP_INDEX_URL, or pip's default) for the
# stack's interpreter; run it on linux x86_64 with the stack's Python (3.11 for tf2). No index URL or
# find-links location is written into the lock file.
set -eu
STACK=${1:?usage: lock.sh STACK}
SCRIPTS="$(cd "$(dirname "$0")" && pwd)"
DIR="$(dirname "$SCRIPTS")/images/$STACK"
[ -f "$DIR/requirements.in" ] || { echo "lock: $DIR/requirements.in not found" >&2; exit 2; }
VENV=${LOCK_VENV:-/tmp/orchestrator-lock-venv}
[ -x "$VENV/bin/pip-compile" ] || { python3 -m venv "$VENV" && "$VENV/bin/pip" install -q pip-tools; }
cd "$DIR"
# the machine's own find-links / local indexes may hold files the image build cannot see: leave them out,
# except for a stack whose stack.json declares a wheelhouse (torch's CPU wheel): then WHEELHOUSE (default: the
# find-links folder of this machine's pip configuration) is searched too; the lock never names it.
FIND_LINKS=""
if grep -q '"wheelhouse"' stack.json; then
    WH=${WHEELHOUSE:-$(pip config get global.find-links 2>/dev/null || true)}
    [ -n "$WH" ] || { echo "lock: $STACK needs a wheelhouse: set WHEELHOUSE=DIR" >&2; exit 2; }
    FIND_LINKS="--find-links $WH"
fi
# CUSTOM_COMPILE_COMMAND: the lock's header names this command, not pip-compile's own (which would name the
# wheelhouse folder)
env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null CUSTOM_COMPILE_COMMAND="make lock STACK=$STACK" \
    "$VENV/bin/pip-compile" -q --generate-hashes --allow-unsafe \
    --no-emit-index-url --no-emit-find-links --strip-extras $FIND_LINKS -o requirements.lock requirements.in
# requirements.exclude (optional): dependencies a package declares that the stack's steps never import, left out
# with whatever only they pull in (the image installs the lock with --no-deps)
if [ -f requirements.exclude ]; then
    python3 "$SCRIPTS/lock_prune.py" requirements.lock requirements.exclude
fi
echo "lock: wrote $DIR/requirements.lock"
