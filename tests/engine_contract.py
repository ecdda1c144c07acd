"""The checks every container engine passes: the Docker engine (tests/e2e) and the unit tests' fake (tests/unit).
They pin what the orchestrator relies on, so a fake that drifts from the real engine fails here."""

import inspect
import os
from pathlib import Path

from orchestrator.engine import ContainerEngine, ContainerSpec, Engine, Mount, RunResult
from orchestrator.errors import EnvironmentProblem

# what the contract's container does: output on both streams, a file in /out, a non-zero exit status
COMMAND = ["sh", "-c", "echo to-stdout; echo to-stderr >&2; echo done > /out/proof; exit 3"]
SLOW = ["sh", "-c", "sleep 30"]


def check_engine(engine, image, tmp_path):
    assert isinstance(engine, ContainerEngine)
    for name in ("info", "image", "build", "layers", "prune_images", "import_rootfs", "save", "load", "run",
                 "start", "state", "remove", "containers", "session"):
        ours, theirs = inspect.signature(getattr(Engine, name)), inspect.signature(getattr(type(engine), name))
        assert list(ours.parameters) == list(theirs.parameters), name
    assert {"server", "api", "os", "arch"} <= set(engine.info())
    assert engine.image("orchestrator/absent:contract") is None
    found = engine.image(image)
    assert {"id", "tags", "size", "labels"} <= set(found) and image in found["tags"]
    layers = engine.layers(image)
    assert sum(size for _key, size in layers) == found["size"] and len({key for key, _s in layers}) == len(layers)
    # pruning by a label no image carries removes nothing; a tagged image is never pruned, nor with no label at all
    assert engine.prune_images({"org.orchestrator.contract": "no-such-image"}) == {"images": 0, "bytes": 0}
    assert engine.prune_images(dict(found["labels"]) or {"org.orchestrator.contract": "x"})["images"] == 0
    assert engine.image(image)["id"] == found["id"]
    try:
        engine.prune_images({})
        raise AssertionError("prune_images without a label must refuse")
    except ValueError:
        pass

    out = Path(tmp_path) / "out"
    out.mkdir()
    user = f"{os.getuid()}:{os.getgid()}"
    result = engine.run(ContainerSpec(image=image, command=COMMAND, user=user,
                                      mounts=[Mount(str(out), "/out", read_only=False)]))
    assert isinstance(result, RunResult) and result.exit_code == 3 and not result.timed_out
    assert result.stdout.strip() == "to-stdout" and result.stderr.strip() == "to-stderr"
    assert (out / "proof").read_text().strip() == "done" and result.seconds >= 0

    slow = engine.run(ContainerSpec(image=image, command=SLOW, user=user, timeout=2))
    assert slow.timed_out and slow.exit_code != 0 and slow.seconds < 25 and slow.stopped is None
    # a watch is asked while the run runs; its first reason stops the run, and is the result's
    asked = []
    watched = engine.run(ContainerSpec(image=image, command=SLOW, user=user, timeout=60),
                         watch=lambda: asked.append(1) or ("enough" if len(asked) == 2 else None))
    assert watched.stopped == "enough" and watched.exit_code != 0 and not watched.timed_out
    assert len(asked) == 2 and watched.seconds < 25

    # a detached container (a warm worker): running until removed, then gone; found by its labels until then
    mark = {"org.orchestrator.contract": os.urandom(6).hex()}
    resident = engine.start(ContainerSpec(image=image, command=SLOW, user=user, labels=mark))
    try:
        assert engine.state(resident)["running"]
        [found_it] = engine.containers(mark)  # by label=value ...
        assert found_it["running"] and found_it["labels"]["org.orchestrator.contract"] == mark["org.orchestrator.contract"]
        assert found_it["id"].startswith(resident) or resident.startswith(found_it["id"])
        assert found_it in engine.containers({"org.orchestrator.contract": None})  # ... and by the label alone
        assert engine.containers({"org.orchestrator.contract": "no-such-container"}) == []
    finally:
        engine.remove(resident)
    assert engine.state(resident) is None and engine.containers(mark) == []
    engine.remove(resident)  # removing a gone container is no error
    # an image that went away after planning is said as that, for a run and for a worker alike
    gone = ContainerSpec(image="orchestrator/absent:contract", command=COMMAND, user=user)
    for call in (engine.run, engine.start):
        try:
            call(gone)
            raise AssertionError(f"{call.__name__} of an absent image must refuse")
        except EnvironmentProblem as exc:
            assert "orchestrator/absent:contract is no longer in the engine" in str(exc)
    with engine.session(rw=[str(out)]) as same:  # a plain engine's session is the engine itself
        assert same is engine
