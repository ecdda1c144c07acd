#!/bin/sh
# Runs inside orchestrator/debian:bullseye, started by lock-tf1.sh.
set -eu
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python2.7 python-pip-whl \
    ca-certificates >/dev/null
if [ -s /ca.crt ]; then cp /ca.crt /usr/local/share/ca-certificates/lock-extra.crt; update-ca-certificates >/dev/null 2>&1 || true; fi
[ -n "${PIP_INDEX_URL:-}" ] || unset PIP_INDEX_URL
export PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONWARNINGS=ignore
W=$(ls /usr/share/python-wheels/pip-*.whl)
python2.7 "$W/pip" install -q "$W"
python2.7 -m pip install -q "setuptools<45" wheel
python2.7 -m pip install -q -r /stack/requirements.in
python2.7 -m pip freeze --all | grep -v -E '^pip[ =@]' > /tmp/freeze.txt
python2.7 -m pip download -q --no-deps -r /tmp/freeze.txt -d /tmp/dl
python2.7 -m pip download -q --no-deps --only-binary=:all: --python-version 37 --implementation cp --abi cp37m \
    --platform manylinux2010_x86_64 -d /tmp/od tf1-tensorflow-object-detection-api==1.15
python2.7 /scripts/write_lock.py /tmp/freeze.txt /tmp/dl /tmp/od /stack
