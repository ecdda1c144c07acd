# The Python 3 stacks' recipe (tf2, keras3, onnx2tf, torch, litert_torch: stack.json "recipe": "python-venv"). Built
# by `orchestrator images build STACK`, which supplies BASE_IMAGE (a debootstrapped Debian imported without a
# registry, or a registry base), SMOKE_TEST (stack.json "smoke_test"), PRELOAD and STACK_ENVIRONMENT (below),
# CONTENT_HASH (the build stage's label) and a _build/ folder holding an optional
# extra CA bundle, an optional wheelhouse (torch's CPU-only wheel) and these shared step helpers. The CA bundle,
# the wheelhouse and any index URL live only in the `build` stage: the final image receives the finished
# virtualenv, the stack's steps/ and nothing else. The stack's requirements.lock decides what is installed; pip,
# apt caches, the packages' test suites and C headers and the libraries' symbol tables stay behind (slim.sh).
# The bytecode of the modules the steps import is compiled once, in the final stage (bytecode.py, its own small
# layer): a step's root is read-only, so without it every container would compile TensorFlow's or torch's Python
# at each import (measured: `import tensorflow` 15.0 s without, 7.1 s with). Only those modules: the smoke test's,
# the worker's preload list (PRELOAD, stack.json "worker") and whatever the scripts in /opt/steps import, loaded
# with the stack's environment (STACK_ENVIRONMENT, stack.json "environment"); compiling the whole virtualenv cost
# about twice the bytes. unchecked-hash: the files never change in the image, so the interpreter need not compare
# them with the source.
ARG BASE_IMAGE=orchestrator/debian:bookworm

# no CA certificates in the final image: a step has no network
FROM ${BASE_IMAGE} AS runtime
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 \
 && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin

# the build stage is labelled so that `images build` can remove it once the image is built (images.py)
FROM runtime AS build
ARG CONTENT_HASH=""
LABEL org.orchestrator.stage=build org.orchestrator.content-hash=$CONTENT_HASH
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv ca-certificates binutils \
 && rm -rf /var/lib/apt/lists/*
COPY requirements.lock /tmp/requirements.lock
# only what pip and slim.sh need: a change to the shared step helpers must not invalidate the installed virtualenv
COPY _build/ca.crt _build/shared/slim.sh /tmp/build/
COPY _build/wheelhouse/ /tmp/build/wheelhouse/
# the stack's site-packages/ (e.g. an empty stand-in for a package its libraries import but never use)
COPY site-packages/ /tmp/build/site-packages/
ARG PIP_INDEX_URL=""
ARG PIP_EXTRA_INDEX_URL=""
RUN set -e; \
    if [ -s /tmp/build/ca.crt ]; then cp /tmp/build/ca.crt /usr/local/share/ca-certificates/build-extra.crt; update-ca-certificates >/dev/null; fi; \
    [ -n "$PIP_INDEX_URL" ] || unset PIP_INDEX_URL; [ -n "$PIP_EXTRA_INDEX_URL" ] || unset PIP_EXTRA_INDEX_URL; \
    python3 -m venv /opt/venv; \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 \
    /opt/venv/bin/pip install --no-cache-dir --require-hashes --no-deps --only-binary=:all: \
        --find-links /tmp/build/wheelhouse -r /tmp/requirements.lock; \
    /opt/venv/bin/python -m pip uninstall -q -y pip; \
    SP=$(echo /opt/venv/lib/python3*/site-packages); cp -R /tmp/build/site-packages/. "$SP/"; \
    sh /tmp/build/slim.sh "$SP"; find /opt/venv -name __pycache__ -prune -exec rm -rf {} +

FROM runtime
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    TF_CPP_MIN_LOG_LEVEL=3 CUDA_VISIBLE_DEVICES=""
COPY _build/shared/ /opt/steps/
COPY steps/ /opt/steps/
# the stack's smoke test (stack.json "smoke_test"): its main libraries import
ARG SMOKE_TEST="import numpy"
ARG PRELOAD=""
ARG STACK_ENVIRONMENT="{}"
# the bytecode of what the steps import, and nothing else (bytecode.py; it says how many modules and MB)
RUN python /opt/steps/bytecode.py --root /opt/venv --smoke-test "$SMOKE_TEST" --preload "$PRELOAD" \
        --environment "$STACK_ENVIRONMENT"
RUN python -c "$SMOKE_TEST"
