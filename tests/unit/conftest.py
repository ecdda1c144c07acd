import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fakes import KERAS_H5, FakeEngine  # noqa: E402

from orchestrator import images  # noqa: E402

H5 = KERAS_H5


@pytest.fixture(autouse=True)
def reports_by_default(monkeypatch):
    """Conversions write report.html unless told not to: tests/e2e/conftest.py turns it off for its process, which
    may run unit tests too."""
    monkeypatch.delenv("ORCHESTRATOR_NO_REPORT", raising=False)


@pytest.fixture
def python_sigint():
    """Python's own Ctrl-C handler (KeyboardInterrupt) for the test, which a SIGINT it sends (signal.raise_signal,
    _thread.interrupt_main) needs: an xdist worker, or a run started as a background job, has SIGINT ignored."""
    import signal

    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


@pytest.fixture
def keras_file(tmp_path):
    p = tmp_path / "model.h5"
    p.write_bytes(H5)
    return p


@pytest.fixture
def built_engine():
    """A fake engine that already holds every stack's current image."""
    infos = {}
    for stack in images.discover_stacks().values():
        infos[stack.tag()] = {"id": f"sha256:{stack.name}", "tags": [stack.tag()], "size": 1, "labels": {}}
    return FakeEngine(images=infos)
