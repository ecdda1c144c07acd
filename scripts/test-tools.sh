#!/bin/sh
# What the end-to-end tests need on the host besides the engine: headless Chromium (report.html is rendered in it)
# and tmux (the wizard is driven through a real terminal). Installed from the machine's Debian mirror when missing.
set -eu
need=""
command -v chromium >/dev/null 2>&1 || need="$need chromium"
command -v tmux >/dev/null 2>&1 || need="$need tmux"
if [ -z "$need" ]; then
    echo "test tools: chromium and tmux are installed"; exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "test tools: missing$need; install them (apt-get install$need)" >&2; exit 5
fi
echo "test tools: installing$need from the machine's Debian mirror"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
