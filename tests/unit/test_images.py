import json
import shutil
from pathlib import Path

import pytest

from fakes import FakeEngine
from orchestrator import images, machine
from orchestrator.errors import EnvironmentProblem, Terminated, UsageError


@pytest.fixture
def stack_root(tmp_path):
    src = images.images_dir() / "tf2"
    root = tmp_path / "images"
    shutil.copytree(src, root / "tf2", ignore=shutil.ignore_patterns("__pycache__", "_build"))
    shutil.copytree(images.images_dir() / "shared", root / "shared", ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_shared_step_helpers_are_in_the_tag_and_the_context(stack_root):
    stack = images.discover_stacks(stack_root)["tf2"]
    assert stack.shared and "shared" not in images.discover_stacks(stack_root)  # no stack.json: not a stack
    before = stack.tag()
    (stack_root / "shared" / "common.py").write_text("# changed\n")
    assert stack.tag() != before
    engine = FakeEngine(images={images.base_ref("bookworm"): {"id": "sha256:base"}})
    images.build_stack(engine, stack, images.BuildOptions(), log=lambda _: None)
    build = engine.builds[0]
    assert "_build/shared/common.py" in build["files"] and "Dockerfile" in build["files"]
    assert "_build/shared/python-venv.Dockerfile" not in build["files"]
    assert build["buildargs"]["SMOKE_TEST"] == stack.smoke_test and "tensorflow" in stack.smoke_test
    # the recipe is part of every recipe stack's tag
    (stack_root / "shared" / "python-venv.Dockerfile").write_text("FROM scratch\n")
    assert stack.tag() != before


def test_wheelhouse_stack_defaults_to_pip_find_links(stack_root, tmp_path, monkeypatch):
    monkeypatch.setattr(machine, "pip_index_urls", lambda: (None, []))
    meta = json.loads((stack_root / "tf2" / "stack.json").read_text())
    meta["wheelhouse"] = "a CPU-only wheel"
    (stack_root / "tf2" / "stack.json").write_text(json.dumps(meta))
    stack = images.discover_stacks(stack_root)["tf2"]
    engine = FakeEngine(images={images.base_ref("bookworm"): {"id": "sha256:base"}})
    monkeypatch.setattr(machine, "pip_find_links", lambda: [])
    with pytest.raises(EnvironmentProblem, match="needs a wheelhouse"):
        images.build_stack(engine, stack, images.BuildOptions(), log=lambda _: None)
    wh = tmp_path / "found-links"
    wh.mkdir()
    (wh / "torch-2.13.0+cpu-cp311-cp311-linux_x86_64.whl").write_bytes(b"w")
    monkeypatch.setattr(machine, "pip_find_links", lambda: [wh])
    images.build_stack(engine, stack, images.BuildOptions(), log=lambda _: None)
    assert "_build/wheelhouse/torch-2.13.0+cpu-cp311-cp311-linux_x86_64.whl" in engine.builds[0]["files"]


def test_content_hash_ignores_build_leftovers(stack_root):
    stack = images.discover_stacks(stack_root)["tf2"]
    before = stack.tag()
    (stack.path / "_build").mkdir()
    (stack.path / "_build" / "ca.crt").write_text("secret-ish")
    (stack.path / "steps" / "__pycache__").mkdir()
    (stack.path / "steps" / "__pycache__" / "x.pyc").write_bytes(b"1")
    assert stack.tag() == before


def test_changed_lock_changes_tag(stack_root):
    stack = images.discover_stacks(stack_root)["tf2"]
    before = stack.tag()
    with open(stack.path / "requirements.lock", "a") as fh:
        fh.write("\n# changed\n")
    assert stack.tag() != before and stack.tag().startswith("orchestrator/tf2:")


def test_renamed_file_changes_tag(stack_root):
    stack = images.discover_stacks(stack_root)["tf2"]
    before = stack.tag()
    (stack.path / "steps" / "to_tflite.py").rename(stack.path / "steps" / "to_tflite2.py")
    assert stack.tag() != before


def test_unchanged_stack_is_not_rebuilt(stack_root):
    stack = images.discover_stacks(stack_root)["tf2"]
    engine = FakeEngine(images={stack.tag(): {"id": "sha256:abc", "size": 1}, images.base_ref("bookworm"): {"id": "b"}})
    assert images.build_stack(engine, stack, log=lambda _: None) == (stack.tag(), "sha256:abc")
    assert engine.builds == []


def test_build_gets_ca_bundle_index_and_wheelhouse_but_labels_hold_no_secret(stack_root, tmp_path, monkeypatch):
    monkeypatch.setattr(machine, "pip_index_urls", lambda: (None, []))
    stack = images.discover_stacks(stack_root)["tf2"]
    ca = tmp_path / "corp.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nCORP\n-----END CERTIFICATE-----\n")
    wh = tmp_path / "wheels"
    wh.mkdir()
    (wh / "torch-2.13.0+cpu-cp311-cp311-linux_x86_64.whl").write_bytes(b"w")
    engine = FakeEngine(images={images.base_ref("bookworm"): {"id": "sha256:base"}})
    opts = images.BuildOptions(ca_bundle=str(ca), index_url="https://user:pw@index.example/simple", wheelhouse=str(wh))
    tag, _ = images.build_stack(engine, stack, opts, log=lambda _: None)
    build = engine.builds[0]
    assert build["tag"] == tag == stack.tag()
    assert "CORP" in build["ca"]
    assert "_build/wheelhouse/torch-2.13.0+cpu-cp311-cp311-linux_x86_64.whl" in build["files"]
    assert build["buildargs"]["PIP_INDEX_URL"] == "https://user:pw@index.example/simple"
    assert build["buildargs"]["BASE_IMAGE"] == images.base_ref("bookworm")
    assert build["labels"]["org.orchestrator.content-hash"] == stack.content_hash()
    assert "pw@" not in json.dumps(build["labels"]) and "CORP" not in json.dumps(build["labels"])
    # the stack folder itself stays clean
    assert not (stack.path / "_build").exists()


def test_ca_bundle_defaults_to_environment(stack_root, tmp_path, monkeypatch):
    monkeypatch.setattr(machine, "pip_index_urls", lambda: (None, []))
    ca = tmp_path / "env.pem"
    ca.write_text("ENVCA")
    for var in machine.CA_ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))
    engine = FakeEngine(images={images.base_ref("bookworm"): {"id": "b"}})
    images.build_stack(engine, images.discover_stacks(stack_root)["tf2"], log=lambda _: None)
    assert engine.builds[0]["ca"] == "ENVCA"


def test_missing_base_without_permission_to_build_is_environment_problem(stack_root):
    engine = FakeEngine()
    opts = images.BuildOptions(build_base=False)
    with pytest.raises(EnvironmentProblem, match="base image orchestrator/debian:bookworm is missing"):
        images.build_stack(engine, images.discover_stacks(stack_root)["tf2"], opts, log=lambda _: None)


def test_ensure_image_refuses_to_build_when_told(stack_root):
    with pytest.raises(EnvironmentProblem, match="is missing; run `orchestrator images build tf2`"):
        images.ensure_image(FakeEngine(), images.discover_stacks(stack_root)["tf2"], build_if_missing=False)


def test_list_images_marks_built_and_missing(stack_root):
    stack = images.discover_stacks(stack_root)["tf2"]
    rows = images.list_images(FakeEngine(), stack_root)
    assert rows == [{"stack": "tf2", "tag": stack.tag(), "id": "-", "size_mb": None, "built": False}]
    engine = FakeEngine(images={stack.tag(): {"id": "sha256:" + "1" * 64, "size": 2_000_000}})
    assert images.list_images(engine, stack_root)[0]["built"] is True


def test_a_build_removes_its_build_stage_and_the_image_its_tag_replaced(stack_root):
    stack = images.discover_stacks(stack_root)["tf2"]
    other = {"id": "sha256:other", "tags": [], "size": 5, "labels": {"org.orchestrator.stage": "build",
                                                                    "org.orchestrator.content-hash": "another"}}
    engine = FakeEngine(images={images.base_ref("bookworm"): {"id": "sha256:base"}, "<another stack's stage>": other})
    said = []
    tag, first = images.build_stack(engine, stack, images.BuildOptions(), log=said.append)
    assert engine.builds[0]["buildargs"]["CONTENT_HASH"] == stack.content_hash()
    assert not [ref for ref in engine.images if ref.startswith("<build stage")]  # the labelled stage is gone
    assert "<another stack's stage>" in engine.images  # other content's stages stay
    assert any("tf2: removed its build stage (1 untagged images, 0 MB)" in line for line in said)
    _, second = images.build_stack(engine, stack, images.BuildOptions(), force=True, log=said.append)
    assert second != first and engine.image(tag)["id"] == second
    assert not [ref for ref, info in engine.images.items() if info.get("id") == first]  # the replaced image too
    assert set(engine.images) == {images.base_ref("bookworm"), "<another stack's stage>", tag}


def test_concurrent_builds_of_one_image_build_it_once(stack_root, tmp_path, monkeypatch):
    import threading
    import time

    monkeypatch.setenv("ORCHESTRATOR_CACHE_DIR", str(tmp_path / "cache"))
    stack = images.discover_stacks(stack_root)["tf2"]

    class SlowEngine(FakeEngine):
        def build(self, *a, **kw):
            time.sleep(0.3)  # the other thread asks for the image meanwhile
            return super().build(*a, **kw)

    engine = SlowEngine(images={images.base_ref("bookworm"): {"id": "sha256:base"}})
    said = []
    threads = [threading.Thread(target=images.build_stack, args=(engine, stack), kwargs={"log": said.append})
               for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(engine.builds) == 1 and sum("is up to date" in line for line in said) == 1


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt(), Terminated(15)], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_build_leaves_no_stage_and_no_lock(stack_root, tmp_path, monkeypatch, interrupt):
    monkeypatch.setenv("ORCHESTRATOR_CACHE_DIR", str(tmp_path / "cache"))
    stack = images.discover_stacks(stack_root)["tf2"]
    other = {"id": "sha256:other", "tags": [], "size": 5, "labels": {"org.orchestrator.content-hash": "another"}}

    class InterruptedEngine(FakeEngine):
        def build(self, ctx, tag, buildargs=None, **kw):  # the labelled stage is committed, then the signal comes
            super().build(ctx, tag, buildargs=buildargs, **kw)
            del self.images[tag]
            raise interrupt

    engine = InterruptedEngine(images={images.base_ref("bookworm"): {"id": "sha256:base"}, "<other stage>": other})
    said = []
    with pytest.raises(type(interrupt)):
        images.build_stack(engine, stack, images.BuildOptions(), log=said.append)
    assert set(engine.images) == {images.base_ref("bookworm"), "<other stage>"}  # its stage gone, others' kept
    assert "tf2: removed its build stage (1 untagged images, 0 MB)" in said
    assert list((tmp_path / "cache" / "locks").iterdir()) == []
    images.build_stack(FakeEngine(images={images.base_ref("bookworm"): {"id": "b"}}), stack, log=said.append)
    assert list((tmp_path / "cache" / "locks").iterdir()) == []  # nor does a finished build leave its lock file


def test_image_totals_count_shared_layers_once(stack_root):
    shutil.copytree(stack_root / "tf2", stack_root / "keras3")
    stacks = images.discover_stacks(stack_root)
    engine = FakeEngine(images={
        stacks["tf2"].tag(): {"id": "sha256:a", "size": 600, "layers": [("base", 100), ("runtime", 200), ("a", 300)]},
        stacks["keras3"].tag(): {"id": "sha256:b", "size": 700, "layers": [("base", 100), ("runtime", 200),
                                                                          ("b", 400)]}})
    assert images.image_totals(engine, stack_root) == {"nominal": 1300, "on_disk": 1000, "images": 2}
    del engine.images[stacks["keras3"].tag()]  # not built: not counted
    assert images.image_totals(engine, stack_root) == {"nominal": 600, "on_disk": 600, "images": 1}


def test_a_debootstrapped_base_keeps_no_docs_translations_or_apt_caches(tmp_path):
    root = tmp_path / "rootfs"
    files = ["usr/share/doc/bash/copyright", "usr/share/doc/bash/README.gz", "usr/share/man/man1/ls.1.gz",
             "usr/share/locale/de/LC_MESSAGES/apt.mo", "usr/share/locale/locale.alias", "usr/share/info/dir",
             "var/cache/apt/pkgcache.bin", "usr/share/zoneinfo/UTC", "usr/lib/locale/C.utf8/LC_CTYPE"]
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("x")
    images.slim_rootfs(root)
    left = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert left == ["etc/apt/apt.conf.d/docker-clean", "etc/dpkg/dpkg.cfg.d/orchestrator-slim",
                    "usr/lib/locale/C.utf8/LC_CTYPE", "usr/share/doc/bash/copyright", "usr/share/locale/locale.alias",
                    "usr/share/zoneinfo/UTC"]
    assert not (root / "usr/share/man/man1").exists()
    dpkg = (root / "etc/dpkg/dpkg.cfg.d/orchestrator-slim").read_text()
    assert "path-exclude=/usr/share/doc/*\n" in dpkg and "path-include=/usr/share/doc/*/copyright\n" in dpkg
    assert 'Dir::Cache::pkgcache "";' in (root / "etc/apt/apt.conf.d/docker-clean").read_text()


def test_stack_description_is_validated(tmp_path):
    bad = tmp_path / "images" / "odd"
    bad.mkdir(parents=True)
    (bad / "stack.json").write_text(json.dumps({"description": "x", "base": "buster"}))
    with pytest.raises(EnvironmentProblem, match="odd/stack.json: base: 'buster' is not one of"):
        images.discover_stacks(tmp_path / "images")
    (bad / "stack.json").write_text(json.dumps({"description": "x", "base": "bookworm", "shared": True}))
    with pytest.raises(EnvironmentProblem, match="Additional properties are not allowed .'shared' was unexpected"):
        images.discover_stacks(tmp_path / "images")


def test_every_stack_follows_the_stack_schema():
    from orchestrator import protocol

    for stack in images.discover_stacks().values():
        meta = json.loads((stack.path / "stack.json").read_text())
        assert protocol.problem("stack", meta) is None, stack.name
        assert stack.interpreter in ("python", "node")
        if stack.compare_in:
            assert images.get_stack(stack.compare_in).has_script("compare.py")
        else:
            assert stack.has_script("compare.py"), f"{stack.name} neither compares nor names a stack that does"


def test_unknown_stack():
    with pytest.raises(UsageError, match="unknown stack 'nope'"):
        images.get_stack("nope")


def test_unknown_suite():
    with pytest.raises(UsageError, match="unknown suite"):
        images.build_base(FakeEngine(), "buster")


def test_apt_sources_deb822_and_one_line(tmp_path):
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    (apt / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.test/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.test/debian-security\nSuites: bookworm-security\nComponents: main\n")
    assert machine.debian_mirror(apt) == "http://mirror.test/debian"
    (apt / "sources.list.d" / "debian.sources").unlink()
    (apt / "sources.list").write_text("# c\ndeb [arch=amd64] http://other.test/debian/ bullseye main contrib\n")
    assert machine.debian_mirror(apt) == "http://other.test/debian"


def test_pip_index_urls_skip_local_indexes(monkeypatch):
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    monkeypatch.setattr(machine, "pip_config", lambda: {
        "global.index-url": "https://idx.test/simple", "global.extra-index-url": "file:///opt/local https://x.test/s"})
    assert machine.pip_index_urls() == ("https://idx.test/simple", ["https://x.test/s"])


@pytest.mark.parametrize("name, gz", [("stacks.tar", False), ("stacks.tar.gz", True)])
def test_save_compresses_by_file_name_and_says_progress(stack_root, tmp_path, name, gz):
    stack = images.discover_stacks(stack_root)["tf2"]
    engine = FakeEngine(images={stack.tag(): {"id": "sha256:" + "1" * 64, "size": 1}})
    said = []
    refs = images.save_images(engine, tmp_path / name, ["tf2"], root=stack_root, log=said.append)
    data = (tmp_path / name).read_bytes()
    assert (data[:2] == b"\x1f\x8b") is gz and not list(tmp_path.glob("*.partial"))
    assert said and said[-1].startswith(f"images save ({name}): ") and "MB/s" in said[-1]
    said.clear()
    assert images.load_images(engine, tmp_path / name, log=said.append) == refs == [stack.tag()]
    assert said[-1].startswith(f"images load ({name}): ")


def test_quiet_build_shows_steps_keeps_the_log_and_its_tail_on_failure(stack_root, tmp_path, monkeypatch):
    from orchestrator.errors import BuildFailed

    monkeypatch.setenv("ORCHESTRATOR_CACHE_DIR", str(tmp_path / "cache"))
    stack = images.discover_stacks(stack_root)["tf2"]
    engine = FakeEngine(images={images.base_ref("bookworm"): {"id": "b"}})
    noise = [f"pip: collecting package {i}" for i in range(100)]

    def build(ctx, tag, log=None, **kw):
        for i, line in enumerate(noise):
            if i % 50 == 0:
                log(f"Step {i // 50 + 1}/2 : RUN pip install {i}")
            log(line)
        raise BuildFailed(tag, "ERROR: no matching distribution")

    monkeypatch.setattr(engine, "build", build)
    said = []
    with pytest.raises(BuildFailed):
        images.build_stack(engine, stack, images.BuildOptions(), log=said.append)
    steps = [s for s in said if s.startswith("tf2: step ")]
    assert [s.split(" (")[0] for s in steps] == ["tf2: step 1/2", "tf2: step 2/2"]
    assert not any(s == noise[10] for s in said)  # the noise stays in the file ...
    assert said[-2].strip() == noise[-1] and said[-1].startswith("tf2: the build failed; full log: ")
    log_file = Path(said[-1].split("full log: ")[1])
    assert log_file.read_text().count("pip: collecting") == 100  # ... all of it
    assert len([s for s in said if s.startswith("  ")]) == 40  # ... and its last 40 lines on screen


def test_the_recipe_gets_the_preload_list_and_the_environment_for_its_bytecode(stack_root):
    meta = json.loads((stack_root / "tf2" / "stack.json").read_text())
    meta["environment"] = {"KERAS_BACKEND": "jax", "A": "1"}
    (stack_root / "tf2" / "stack.json").write_text(json.dumps(meta))
    stack = images.discover_stacks(stack_root)["tf2"]
    engine = FakeEngine(images={images.base_ref("bookworm"): {"id": "sha256:base"}})
    images.build_stack(engine, stack, images.BuildOptions(), log=lambda _: None)
    args = engine.builds[0]["buildargs"]
    assert args["PRELOAD"] == ",".join(meta["worker"]["preload"]) and "tensorflow" in args["PRELOAD"]
    assert json.loads(args["STACK_ENVIRONMENT"]) == {"KERAS_BACKEND": "jax", "A": "1"}
    assert "_build/shared/bytecode.py" in engine.builds[0]["files"]
    recipe = (stack_root / "shared" / "python-venv.Dockerfile").read_text()
    assert "ARG PRELOAD" in recipe and "ARG STACK_ENVIRONMENT" in recipe and "compileall" not in recipe
    # a Dockerfile that takes neither gets neither (no "build-args were not consumed" warning)
    assert images.recipe_args(stack, "FROM scratch\n") == {"SMOKE_TEST": stack.smoke_test}


# -- images build -j: several stacks at once ----------------------------------------------------------------------
class ParallelEngine(FakeEngine):
    """A fake engine whose builds take time and say their Dockerfile's steps, as the classic builder does, and may run
    at once (thread-safe); `events` records (what, stack) in order: start, end, each FROM step, base builds."""

    def __init__(self, images_=None, after=None, rest=0.2, fail=(), block=False):
        import collections
        import threading

        super().__init__(images=images_)
        self.after = dict(after or {})  # stack -> the stack whose build's end its first stage waits for
        self.ended = collections.defaultdict(threading.Event)
        self.lock, self.events, self.removed = threading.Lock(), [], []
        self.rest, self.fail, self.block = rest, set(fail), block
        self.gone = {}  # step container -> Event set when it is removed

    def note(self, what, stack):
        with self.lock:
            self.events.append((what, stack))

    def running(self):
        """The most builds that ran at once."""
        now = most = 0
        for what, _ in self.events:
            now += {"start": 1, "end": -1}.get(what, 0)
            most = max(most, now)
        return most

    def build(self, context_dir, tag, buildargs=None, labels=None, nocache=False, log=None):
        import threading
        import time

        from orchestrator.errors import BuildFailed

        stack = tag.split("/")[1].split(":")[0]
        self.note("start", stack)
        try:
            with self.lock:  # the classic builder leaves its labelled build stage behind as it goes
                self.images[f"<stage of {stack}>"] = {"id": f"sha256:stage-{stack}", "tags": [], "size": 10,
                                                      "labels": {"org.orchestrator.content-hash":
                                                                 buildargs["CONTENT_HASH"]}}
            log("Step 1/5 : ARG BASE_IMAGE=orchestrator/debian:bookworm")
            log("Step 2/5 : FROM orchestrator/debian:bookworm AS runtime")
            if stack in self.after:  # a long first stage
                self.ended[self.after[stack]].wait(10)
            time.sleep(0.05)
            self.note("from2", stack)
            log("Step 3/5 : FROM runtime AS build")
            log("Step 4/5 : RUN pip install")
            if self.block:  # a long step: runs until its container is removed
                cid = stack[0] * 12 + "0123456789abcdef"  # hexadecimal, as the engine's
                self.gone[cid] = threading.Event()
                log(f" ---> Running in {cid}")
                self.gone[cid].wait(10)
                if stack.startswith("a"):  # the engine says the step failed ...
                    raise BuildFailed(tag, "The command returned a non-zero code: 137")
                log("Removing intermediate container " + cid)  # ... or goes on to its next line
            time.sleep(self.rest)
            if stack in self.fail:
                log("ERROR: no matching distribution")
                raise BuildFailed(tag, "ERROR: no matching distribution")
            log("Step 5/5 : RUN python -c 'import numpy'")
            with self.lock:
                return super().build(context_dir, tag, buildargs=buildargs, labels=labels, nocache=nocache)
        finally:
            self.note("end", stack)
            self.ended[stack].set()

    def prune_images(self, labels):
        with self.lock:
            return super().prune_images(labels)

    def remove(self, container):
        self.removed.append(container)
        self.gone[container].set()


@pytest.fixture
def many_stacks(stack_root, tmp_path, monkeypatch):
    """a_venv and b_venv (the python-venv recipe, as tf2), c_own (its own Dockerfile, as tfjs), d_old (bullseye, as
    tf1)."""
    monkeypatch.setenv("ORCHESTRATOR_CACHE_DIR", str(tmp_path / "cache"))
    for name, source in (("a_venv", None), ("b_venv", None), ("c_own", "tfjs"), ("d_old", "tf1")):
        if source:
            shutil.copytree(images.images_dir() / source, stack_root / name,
                            ignore=shutil.ignore_patterns("__pycache__", "_build"))
        else:
            shutil.copytree(stack_root / "tf2", stack_root / name)
    shutil.rmtree(stack_root / "tf2")
    return images.discover_stacks(stack_root)


BASES = {images.base_ref("bookworm"): {"id": "sha256:bookworm"}, images.base_ref("bullseye"): {"id": "sha256:bull"}}


def test_two_stacks_build_at_once_but_not_two_of_one_recipe_before_its_first_stage(many_stacks):
    engine = ParallelEngine(BASES, after={"a_venv": "c_own"})
    stacks = [many_stacks[n] for n in ("a_venv", "b_venv", "c_own", "d_old")]
    said = []
    built = images.build_stacks(engine, stacks, images.BuildOptions(), jobs=2, log=said.append)
    assert built == [(s.tag(), engine.image(s.tag())["id"]) for s in stacks]  # in the order asked
    assert engine.running() == 2  # two at once, never three
    events = engine.events
    # b_venv shares a_venv's Dockerfile: it starts only once a_venv's first stage (the runtime) is done, though
    # c_own's quicker build left a worker free before that
    assert events.index(("start", "b_venv")) > events.index(("from2", "a_venv")) > events.index(("end", "c_own"))
    # each build's progress, as plain lines; every build stage removed
    assert any(line.startswith("b_venv: step 3/5 (") for line in said) and sum("built in" in x for x in said) == 4
    assert not [ref for ref in engine.images if "stage" in ref]


def test_up_to_date_stacks_are_said_and_one_stack_builds_as_before(many_stacks):
    a, c = many_stacks["a_venv"], many_stacks["c_own"]
    engine = ParallelEngine(dict(BASES, **{a.tag(): {"id": "sha256:a", "size": 1}}))
    said = []
    assert images.build_stacks(engine, [a, c], images.BuildOptions(), jobs=2, log=said.append) == [
        (a.tag(), "sha256:a"), (c.tag(), engine.image(c.tag())["id"])]
    assert f"{a.tag()} is up to date (sha256:a)" in said and [e for e in engine.events if e[0] == "start"] == [
        ("start", "c_own")]


def test_a_failed_build_does_not_stop_the_others_and_every_failure_is_said(many_stacks):
    from orchestrator.errors import BuildFailed, BuildsFailed

    stacks = [many_stacks[n] for n in ("a_venv", "b_venv", "c_own", "d_old")]
    engine = ParallelEngine(BASES, fail={"b_venv"})
    said = []
    with pytest.raises(BuildFailed) as caught:  # one failure: the very error a single build raises
        images.build_stacks(engine, stacks, images.BuildOptions(), jobs=2, log=said.append)
    assert type(caught.value) is BuildFailed and caught.value.exit_code == 5
    assert {s.name for s in stacks if engine.image(s.tag())} == {"a_venv", "c_own", "d_old"}
    assert "b_venv: the build failed; full log: " in "\n".join(said)  # its last lines, as before ...
    assert said[-2] == "1 of 4 stack builds failed:"  # ... and one line at the end, with its log
    assert said[-1].startswith(f"  b_venv: building {many_stacks['b_venv'].tag()} failed: ERROR: no matching")
    assert said[-1].endswith(".log)") and Path(said[-1].split("(log: ")[1][:-1]).is_file()

    engine = ParallelEngine(BASES, fail={"a_venv", "d_old"})
    said = []
    with pytest.raises(BuildsFailed) as caught:
        images.build_stacks(engine, stacks, images.BuildOptions(), force=True, jobs=2, log=said.append)
    assert caught.value.exit_code == 5 and isinstance(caught.value, BuildFailed)
    assert str(caught.value).startswith("2 stack builds failed: a_venv (building orchestrator/a_venv:")
    assert "; d_old (building orchestrator/d_old:" in str(caught.value)
    assert said[-3] == "2 of 4 stack builds failed:" and [x.split(":")[0] for x in said[-2:]] == ["  a_venv",
                                                                                                 "  d_old"]
    assert engine.image(many_stacks["b_venv"].tag()) and engine.image(many_stacks["c_own"].tag())


def test_the_missing_bases_are_made_first_each_suite_once_two_at_once(many_stacks, monkeypatch):
    import threading
    import time

    engine = ParallelEngine()
    made, lock = [], threading.Lock()

    def build_base(engine_, suite, mirror=None, from_registry=False, force=False, log=print):
        engine.note("base start", suite)
        time.sleep(0.3)
        with lock:
            made.append(suite)
            if suite == "bullseye" and len(made) > 2:  # the second round: debootstrap fails
                raise EnvironmentProblem("debootstrap bullseye from http://mirror.test failed: E: no network")
            engine.images[images.base_ref(suite)] = {"id": f"sha256:{suite}"}
        engine.note("base end", suite)
        return f"sha256:{suite}"

    monkeypatch.setattr(images, "build_base", build_base)
    stacks = list(many_stacks.values())
    images.build_stacks(engine, stacks, images.BuildOptions(), jobs=2, log=lambda _: None)
    assert sorted(made) == ["bookworm", "bullseye"]  # each once, though three stacks are on bookworm
    starts = [i for i, e in enumerate(engine.events) if e[0] == "base start"]
    ends = [i for i, e in enumerate(engine.events) if e[0] == "base end"]
    assert max(starts) < min(ends)  # at once
    assert max(ends) < engine.events.index(("start", "a_venv"))  # before any stack

    # a base that cannot be made fails its stacks only
    for suite in ("bookworm", "bullseye"):
        del engine.images[images.base_ref(suite)]
    said = []
    with pytest.raises(EnvironmentProblem, match="debootstrap bullseye .* failed"):
        images.build_stacks(engine, stacks, images.BuildOptions(), force=True, jobs=2, log=said.append)
    assert said[-2:] == ["1 of 4 stack builds failed:",
                         "  d_old: debootstrap bullseye from http://mirror.test failed: E: no network"]
    assert [e for e in engine.events[-12:] if e == ("start", "d_old")] == []


def test_an_interrupt_stops_every_running_build_and_leaves_no_stage_or_lock(many_stacks, tmp_path, python_sigint):
    import _thread
    import threading
    import time

    engine = ParallelEngine(BASES, block=True)
    stacks = [many_stacks[n] for n in ("a_venv", "c_own", "d_old")]

    def interrupt():  # once both builds run their long step
        while len(engine.gone) < 2:
            time.sleep(0.02)
        _thread.interrupt_main()

    threading.Thread(target=interrupt, daemon=True).start()
    said, started = [], time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        images.build_stacks(engine, stacks, images.BuildOptions(), jobs=2, log=said.append)
    assert time.monotonic() - started < 8  # not the 10 s the steps would run on
    assert sorted(engine.removed) == sorted(engine.gone)  # each running step's container removed
    # the two threads start in either order; no third build starts
    assert sorted(e for e in engine.events if e[0] == "start") == [("start", "a_venv"), ("start", "c_own")]
    assert engine.events.count(("end", "a_venv")) == engine.events.count(("end", "c_own")) == 1
    assert not [ref for ref in engine.images if "stage" in ref]  # a failed step's, and a stopped one's
    assert not [s for s in stacks if engine.image(s.tag())]
    assert list((tmp_path / "cache" / "locks").iterdir()) == []
    assert not any("the build failed" in line for line in said)  # a stopped build's tail is not shown


def test_a_stack_changed_while_it_builds_still_loses_its_build_stage(stack_root, tmp_path, monkeypatch):
    monkeypatch.setenv("ORCHESTRATOR_CACHE_DIR", str(tmp_path / "cache"))
    stack = images.discover_stacks(stack_root)["tf2"]
    tag = stack.tag()

    class EditedEngine(FakeEngine):
        def build(self, *a, **kw):  # someone edits a step script while the build runs
            (stack.path / "steps" / "run_model.py").write_text("# edited\n")
            return super().build(*a, **kw)

    engine = EditedEngine(images={images.base_ref("bookworm"): {"id": "sha256:base"}})
    assert images.build_stack(engine, stack, images.BuildOptions(), log=lambda _: None)[0] == tag
    assert stack.tag() != tag and engine.image(tag)["labels"]["org.orchestrator.content-hash"][:12] == tag[-12:]
    assert not [ref for ref in engine.images if ref.startswith("<build stage")]


# -- stacks that run in another stack's image (stack.json "image": an alias of that image) ------------------------
@pytest.fixture
def alias_root(stack_root, tmp_path, monkeypatch):
    """tf2 and `buddy`, whose steps run in tf2's image, with their own runner, worker and environment."""
    monkeypatch.setenv("ORCHESTRATOR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(machine, "pip_index_urls", lambda: (None, []))
    buddy = stack_root / "buddy"
    (buddy / "steps").mkdir(parents=True)
    (buddy / "steps" / "buddy_convert.py").write_text("import buddy_lib\n")
    (buddy / "stack.json").write_text(json.dumps({
        "description": "a stack whose steps run in tf2's image", "image": "tf2", "runs_formats": ["onnx"],
        "worker": {"preload": ["buddy_lib", "numpy"]}, "environment": {"BUDDY": "1"}}))
    return stack_root


def _meta(folder, **changes):
    meta = json.loads((folder / "stack.json").read_text())
    meta.update(changes)
    (folder / "stack.json").write_text(json.dumps({k: v for k, v in meta.items() if v is not None}))


def test_an_alias_stack_has_its_hosts_tag_and_its_folder_is_part_of_it(alias_root):
    stacks = images.discover_stacks(alias_root)
    host, buddy = stacks["tf2"], stacks["buddy"]
    assert buddy.image_stack == buddy.host == host and host.image_stack == host
    assert [a.name for a in host.aliases] == ["buddy"] and buddy.aliases == ()
    assert buddy.tag() == host.tag() and buddy.tag().startswith("orchestrator/tf2:")
    assert buddy.repository == host.repository and buddy.content_hash() == host.content_hash()
    assert buddy.base == "bookworm" and buddy.dockerfile == host.dockerfile
    before = host.tag()
    (alias_root / "buddy" / "steps" / "buddy_convert.py").write_text("import buddy_lib  # edited\n")
    assert images.discover_stacks(alias_root)["tf2"].tag() != before  # an alias's step: a new image
    edited = images.discover_stacks(alias_root)["tf2"].tag()
    _meta(alias_root / "buddy", worker={"preload": ["buddy_lib"]})
    assert images.discover_stacks(alias_root)["buddy"].tag() != edited  # its stack.json too (PRELOAD)
    shutil.rmtree(alias_root / "buddy")
    assert images.discover_stacks(alias_root)["tf2"].tag() not in (before, edited)  # without it: tf2's own hash


def test_an_alias_has_its_own_scripts_runner_worker_and_environment(alias_root):
    from orchestrator import runner, workers

    stacks = images.discover_stacks(alias_root)
    host, buddy = stacks["tf2"], stacks["buddy"]
    assert buddy.has_script("buddy_convert.py") and buddy.has_script("compare.py")  # its own, the image's shared
    assert buddy.has_script(images.WORKER_SCRIPT) and not buddy.has_script("to_tflite.py")
    assert not host.has_script("buddy_convert.py")  # each stack's routes name its own scripts
    assert buddy.runs_formats == ("onnx",) and buddy.worker[-1] == "buddy_lib,numpy"
    specs = {}
    for stack in (host, buddy):
        image = runner.StackImage.of(stack, stack.tag(), "sha256:one")
        run = runner.StepRun("s", image, "x.py", out_dir=alias_root.parent / "out")
        specs[stack.name] = runner.container_spec(run)
    assert specs["tf2"].image == specs["buddy"].image
    assert specs["buddy"].environment["BUDDY"] == "1" and "BUDDY" not in specs["tf2"].environment
    assert specs["tf2"].environment["TF_ENABLE_ONEDNN_OPTS"] == "0"
    assert "TF_ENABLE_ONEDNN_OPTS" not in specs["buddy"].environment
    assert workers.worker_key(specs["tf2"]) != workers.worker_key(specs["buddy"])  # warm workers of their own


def test_the_host_image_carries_the_aliases_steps_preloads_and_environments(alias_root):
    stacks = images.discover_stacks(alias_root)
    engine = FakeEngine(images={images.base_ref("bookworm"): {"id": "sha256:base"}})
    tag, _ = images.build_stack(engine, stacks["buddy"], images.BuildOptions(), log=lambda _: None)
    assert tag == stacks["tf2"].tag() and len(engine.builds) == 1
    build = engine.builds[0]
    assert "steps/buddy_convert.py" in build["files"] and "steps/to_tflite.py" in build["files"]
    assert "stack.json" in build["files"] and "requirements.lock" in build["files"]  # tf2's
    args = build["buildargs"]
    tf2_preload = json.loads((alias_root / "tf2" / "stack.json").read_text())["worker"]["preload"]
    assert args["PRELOAD"].split(",") == tf2_preload + ["buddy_lib"]  # each module once
    assert json.loads(args["STACK_ENVIRONMENT"]) == {"TF_ENABLE_ONEDNN_OPTS": "0", "BUDDY": "1"}
    assert args["SMOKE_TEST"] == stacks["tf2"].smoke_test and args["CONTENT_HASH"] == stacks["tf2"].content_hash()
    assert build["labels"]["org.orchestrator.stack"] == "tf2"
    assert images.recipe_args(stacks["buddy"], "PRELOAD STACK_ENVIRONMENT") == images.recipe_args(
        stacks["tf2"], "PRELOAD STACK_ENVIRONMENT")


@pytest.mark.parametrize("name, clash", [("to_tflite.py", "images/tf2/steps/to_tflite.py"),
                                         ("compare.py", "images/shared/compare.py")])
def test_a_step_file_name_both_stacks_have_is_refused_in_one_line(alias_root, name, clash):
    (alias_root / "buddy" / "steps" / name).write_text("# the alias's own\n")
    stack = images.discover_stacks(alias_root)["buddy"]
    engine = FakeEngine(images={images.base_ref("bookworm"): {"id": "sha256:base"}})
    with pytest.raises(EnvironmentProblem) as caught:
        images.build_stack(engine, stack, images.BuildOptions(), log=lambda _: None)
    message = str(caught.value)
    assert message == (f"images/buddy/steps/{name} would replace {clash} in the image of stack 'tf2', which both "
                       "run in; rename one of them")
    assert "\n" not in message and engine.builds == []


def test_two_aliases_with_one_step_name_are_refused(alias_root):
    shutil.copytree(alias_root / "buddy", alias_root / "pal")
    stack = images.discover_stacks(alias_root)["tf2"]
    with pytest.raises(EnvironmentProblem, match=r"^images/pal/steps/buddy_convert.py would replace "
                                                 r"images/buddy/steps/buddy_convert.py in the image of stack 'tf2'"):
        images.build_stack(FakeEngine(images={images.base_ref("bookworm"): {"id": "b"}}), stack, log=lambda _: None)


@pytest.mark.parametrize("change, message", [
    ({"image": "nope"}, r"buddy/stack.json: \"image\": 'nope' is no stack; name the stack whose image its steps "
                        r"run in \(stacks: tf2\)"),
    ({"image": "buddy"}, r"buddy/stack.json: \"image\": 'buddy' is the stack itself"),
    ({"base": "bookworm"}, r"buddy/stack.json: its steps run in the image of stack 'tf2' \(\"image\"\), so it has "
                           r"no base of its own; those of 'tf2' make that image"),
    ({"recipe": "python-venv", "lock": "x.lock"}, r"so it has no lock, recipe of its own"),
    ({"smoke_test": "import x"}, r"so it has no smoke_test of its own"),
    ({"environment": {"TF_ENABLE_ONEDNN_OPTS": "1"}}, r"buddy/stack.json: \"environment\": TF_ENABLE_ONEDNN_OPTS='1', "
                                                      r"but another stack in the image of stack 'tf2' sets "
                                                      r"TF_ENABLE_ONEDNN_OPTS='0'; the image's bytecode is compiled "
                                                      r"under one environment"),
])
def test_an_alias_is_validated(alias_root, change, message):
    _meta(alias_root / "buddy", **change)
    with pytest.raises(EnvironmentProblem, match=message):
        images.discover_stacks(alias_root)


@pytest.mark.parametrize("name", ["Dockerfile", "requirements.lock", "requirements.in", "requirements.exclude"])
def test_an_alias_with_its_own_build_files_is_refused(alias_root, name):
    (alias_root / "buddy" / name).write_text("x\n")
    with pytest.raises(EnvironmentProblem, match=rf"so it has no {name} of its own"):
        images.discover_stacks(alias_root)


def test_an_alias_of_an_alias_is_refused(alias_root):
    shutil.copytree(alias_root / "buddy", alias_root / "pal")
    _meta(alias_root / "pal", image="buddy")
    with pytest.raises(EnvironmentProblem, match=r"pal/stack.json: \"image\": 'buddy' runs in the image of stack 'tf2' "
                                                 r"itself; name 'tf2', the stack that builds it"):
        images.discover_stacks(alias_root)


def test_the_schema_says_what_an_alias_leaves_out():
    from orchestrator import protocol

    alias = {"description": "x", "image": "torch"}
    assert protocol.problem("stack", alias) is None
    assert protocol.problem("stack", dict(alias, base="bookworm")) is not None
    assert protocol.problem("stack", dict(alias, lock="x.lock")) is not None
    assert protocol.problem("stack", {"description": "x"}) == "'base' is a required property"


def test_build_list_totals_and_save_count_a_shared_image_once(alias_root, tmp_path):
    stacks = images.discover_stacks(alias_root)
    host, buddy = stacks["tf2"], stacks["buddy"]
    engine = ParallelEngine({ref: dict(info, size=75) for ref, info in BASES.items()}, rest=0.01)
    said = []
    built = images.build_stacks(engine, [buddy, host], images.BuildOptions(), jobs=2, log=said.append)
    assert built == [(host.tag(), engine.image(host.tag())["id"])]  # one image, built once
    assert [e for e in engine.events if e[0] == "start"] == [("start", "tf2")]
    assert f"buddy: its steps run in the image of stack 'tf2', {host.tag()}" in said
    assert images.build_stacks(engine, [buddy], images.BuildOptions(), jobs=2, log=said.append) == built
    assert said[-1] == f"{host.tag()} is up to date ({built[0][1][:19]})"

    engine.images[host.tag()].update(size=700, layers=[("base", 100), ("own", 600)])
    rows = images.list_images(engine, alias_root)
    by = {r["stack"]: r for r in rows}
    assert by["buddy"]["tag"] == by["tf2"]["tag"] == host.tag() and by["buddy"]["id"] == by["tf2"]["id"] != "-"
    assert images.image_totals(engine, alias_root) == {"nominal": 700, "on_disk": 700, "images": 1}
    refs = images.save_images(engine, tmp_path / "s.tar", ["buddy", "tf2"], root=alias_root)
    assert refs == [host.tag()]
    assert images.save_images(engine, tmp_path / "all.tar", root=alias_root) == [host.tag()]


def test_ready_gives_each_stack_its_own_settings_in_the_one_image(alias_root, monkeypatch):
    monkeypatch.setenv("ORCHESTRATOR_IMAGES_DIR", str(alias_root))
    engine = FakeEngine(images={images.base_ref("bookworm"): {"id": "sha256:base"}})
    found = images.ready(engine, ["buddy", "tf2", "buddy"])
    assert len(engine.builds) == 1 and set(found) == {"buddy", "tf2"}
    assert found["buddy"].tag == found["tf2"].tag and found["buddy"].id == found["tf2"].id
    assert found["buddy"].stack == "buddy" and dict(found["buddy"].environment) == {"BUDDY": "1"}
    assert found["buddy"].worker[-1] == "buddy_lib,numpy" and found["tf2"].worker[-1] != "buddy_lib,numpy"
    with pytest.raises(EnvironmentProblem, match=r"for stack 'buddy' is missing; run `orchestrator images build "
                                                 r"buddy`"):
        images.ensure_image(FakeEngine(), images.get_stack("buddy"), build_if_missing=False)
