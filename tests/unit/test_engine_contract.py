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


class _BuildApi:
    """docker-py's APIClient (a requests session) as far as Engine.build uses it: the session's response hooks, and
    a build that streams `lines` and is then interrupted (Ctrl-C)."""

    def __init__(self, lines):
        self.hooks, self.lines, self.removed = {"response": []}, lines, []
        self.response = type("Response", (), {"closed": False, "close": lambda r: setattr(r, "closed", True)})()

    def build(self, **kw):
        for hook in self.hooks["response"]:
            hook(self.response)

        def stream():
            yield from ({"stream": line} for line in self.lines)
            raise KeyboardInterrupt
        return stream()

    def remove_container(self, container, force=False):
        from docker.errors import APIError

        self.removed.append(container)
        if len(self.removed) == 1:  # as the engine may answer while it removes the container itself
            raise APIError("500 Server Error: removal failed", response=type("R", (), {"status_code": 500})())

    def inspect_container(self, container):
        from docker.errors import NotFound

        if len(self.removed) > 1:
            raise NotFound("gone")
        return {"State": {"Running": False, "ExitCode": 137}}


def test_an_interrupted_build_hangs_up_and_removes_the_step_container_it_runs(tmp_path):
    import pytest

    api = _BuildApi(["Step 1/3 : LABEL a=b\n", " ---> Running in 0123456789ab\n",
                     "Removing intermediate container 0123456789ab\n", " ---> 5555aaaa5555\n",
                     "Step 2/3 : RUN sleep 120\n", " ---> Running in ba9876543210\n"])
    engine = Engine(client=type("Client", (), {"api": api})())
    with pytest.raises(KeyboardInterrupt):
        engine.build(tmp_path, "orchestrator/x:1", log=lambda line: None)
    assert api.response.closed  # the engine cancels a build whose client hangs up
    assert api.removed == ["ba9876543210"] * 2  # the step running then, removed again until it is gone
    assert api.hooks["response"] == []


def test_a_prune_waits_for_another_process_s_prune():
    from docker.errors import APIError

    answers = [APIError("409 Conflict: a prune operation is already running",
                        response=type("R", (), {"status_code": 409})()),
               {"ImagesDeleted": [{"Deleted": "sha256:1"}], "SpaceReclaimed": 5}]

    def prune(filters):
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    engine = Engine(client=type("Client", (), {"images": type("Images", (), {"prune": staticmethod(prune)})()})())
    assert engine.prune_images({"org.orchestrator.content-hash": "x"}) == {"images": 1, "bytes": 5}
