"""Faults during an image build, through the real CLI on the real engine: SIGINT and SIGTERM while a stack's
build runs leave no image of that content (tagged, untagged or a labelled build stage), no build container, no
build context folder and no lock file, and say so in one line with the documented exit code (130 / 143).

The build is of a copy of images/ whose tfjs Dockerfile sleeps, in its first step or once its build stage's label is
committed: a new content hash (its own tag, used by no one else), a build surely in progress when the signal comes,
and no network needed."""

import shutil
import signal
import subprocess
import sys
import time
import uuid

import pytest

from clihelp import cli_env
from orchestrator import images

pytestmark = pytest.mark.e2e

SAID = {signal.SIGINT: (130, "orchestrator: interrupted"),
        signal.SIGTERM: (143, "orchestrator: terminated by SIGTERM")}


def slow_tfjs(tmp_path, where):
    """A copy of images/ whose tfjs build sleeps 120 s `where`: in its first step, or in its build stage once the
    stage's label is committed; (the copy, the sleep's command)."""
    root = tmp_path / "images"
    shutil.copytree(images.images_dir(), root, ignore=shutil.ignore_patterns("__pycache__"))
    dockerfile = root / "tfjs" / "Dockerfile"
    sleep = f"sleep 120 && echo {uuid.uuid4().hex}"  # this run's own: no build cache, no one else's container
    lines = dockerfile.read_text().splitlines(keepends=True)
    after = {"first step": "FROM ", "build stage": "LABEL org.orchestrator.stage=build"}[where]
    lines.insert(next(i for i, line in enumerate(lines) if line.startswith(after)) + 1, f"RUN {sleep}\n")
    dockerfile.write_text("".join(lines))
    return root, sleep


def build_containers(engine, sleep):
    """{id: state} of the containers (running or exited) of the build's sleep step. (The SDK's low-level lists:
    its high-level ones inspect each container, and one may go between the listing and the inspection.)"""
    return {c["Id"]: c["State"] for c in engine.client.api.containers(all=True) if sleep in c["Command"]}


def images_of(engine, content_hash):
    """Every image (tagged or not, intermediate ones too) labelled with the content hash, and their containers."""
    found = engine.client.api.images(all=True, quiet=True,
                                     filters={"label": f"org.orchestrator.content-hash={content_hash}"})
    return found, [c["Id"] for c in engine.client.api.containers(all=True) if c["ImageID"] in found]


def wait_for(what, seconds, every=0.25):
    deadline = time.monotonic() + seconds
    while True:
        value = what()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("where", ["first step", "build stage"])
def test_a_signal_during_an_image_build_leaves_nothing_behind(request, engine, tmp_path, sig, where):
    if where == "build stage":  # reached with no network: the runtime stage's steps are in the real image's cache
        request.getfixturevalue("stack_images")
    root, sleep = slow_tfjs(tmp_path, where)
    stack = images.get_stack("tfjs", root=root)
    tag, content_hash = stack.tag(), stack.content_hash()
    assert engine.image(tag) is None
    cache, tmp = tmp_path / "cache", tmp_path / "tmp"
    tmp.mkdir()
    env = cli_env(ORCHESTRATOR_IMAGES_DIR=str(root), ORCHESTRATOR_CACHE_DIR=str(cache), TMPDIR=str(tmp),
                  PYTHONUNBUFFERED="1")
    p = subprocess.Popen([sys.executable, "-m", "orchestrator", "images", "build", "tfjs"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        seen = []
        for line in p.stderr:  # the plain progress lines (stderr is not a terminal): "tfjs: step 2/N (0 s) RUN sleep"
            seen.append(line)
            if line.startswith("tfjs: step ") and sleep in line:
                break
        assert p.poll() is None, "".join(seen) + p.stderr.read()
        running = wait_for(lambda: "running" in build_containers(engine, sleep).values(), 60)
        assert running, "".join(seen) + "no running build container"  # the build is in progress on the engine
        assert list(tmp.glob("orchestrator-build-tfjs-*")) and list((cache / "locks").iterdir())
        p.send_signal(sig)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    err = "".join(seen) + err
    code, said = SAID[sig]
    print(f"images build, {where}/{signal.Signals(sig).name}: exit {p.returncode}: {err.strip().splitlines()[-1]}")
    assert p.returncode == code, err[-3000:]
    assert err.strip().splitlines()[-1] == said
    assert "Traceback" not in err

    def gone():
        found, used = images_of(engine, content_hash)
        return not (engine.image(tag) or found or used or build_containers(engine, sleep))

    assert wait_for(gone, 5), (engine.image(tag), images_of(engine, content_hash), build_containers(engine, sleep),
                               err[-2000:])
    assert list(tmp.glob("orchestrator-build-tfjs-*")) == []  # the build context folder
    assert not (cache / "locks").exists() or list((cache / "locks").iterdir()) == []
