"""The unit tests' fake engine passes the same contract as the Docker engine (tests/e2e/test_e2e_engine.py)."""

import sys
from pathlib import Path

from fakes import FakeEngine
from orchestrator.engine import Engine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from engine_contract import check_engine  # noqa: E402


def test_fake_engine_keeps_the_engine_contract(tmp_path):
    image = "orchestrator/tf2:contract"
    check_engine(FakeEngine(images={image: {"id": "sha256:1", "tags": [image], "size": 1, "labels": {}}}), image,
                 tmp_path)


class _Container:
    """docker-py's Container as far as Engine.run uses it, losing the engine at `fail_at`."""

    def __init__(self, fail_at, seconds=0.0):
        self.fail_at, self.seconds, self.removed = fail_at, seconds, False

    def _maybe(self, where):
        import time

        from requests.exceptions import ConnectionError as ReqConnectionError

        if where == self.fail_at:
            time.sleep(self.seconds)
            raise ReqConnectionError("Connection aborted: engine went away")

    def start(self):
        self._maybe("start")

    def wait(self, timeout=None):
        self._maybe("wait")
        return {"StatusCode": 0}

    def logs(self, **kw):
        return b""

    def kill(self):
        pass

    def remove(self, force=False):
        self.removed = True


class _Client:
    def __init__(self, container):
        self.containers = type("Containers", (), {"create": lambda _self, *a, **k: container})()


def test_a_lost_engine_is_reported_as_that_not_as_a_timeout():
    import pytest

    from orchestrator.engine import ContainerSpec
    from orchestrator.errors import EnvironmentProblem

    for where in ("start", "wait"):
        container = _Container(where)
        engine = Engine(client=_Client(container))
        with pytest.raises(EnvironmentProblem, match="lost the connection to the Docker engine while convert ran"):
            engine.run(ContainerSpec(image="x", command=["true"], name_hint="convert", timeout=60))
        assert container.removed  # cleaned up all the same


def test_a_wait_past_the_timeout_is_a_timeout():
    from orchestrator.engine import ContainerSpec

    container = _Container("wait", seconds=1.0)  # unix sockets report read timeouts as ConnectionErrors
    result = Engine(client=_Client(container)).run(ContainerSpec(image="x", command=["true"], timeout=1.0))
    assert result.timed_out and result.exit_code == -1 and container.removed
