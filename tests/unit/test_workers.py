"""Warm workers (orchestrator/workers.py) on the fake engine: which runs go to a worker, how their paths are
rewritten and read back, what a dying worker leaves, and that nothing stays running. The server side is
tests/unit/test_step_server.py; the real thing is tests/e2e/test_e2e_workers.py."""

import json
from pathlib import Path

import pytest

from fakes import exit_with
from orchestrator import images, pipeline, workers
from orchestrator.cache import Cache, CachedEngine
from orchestrator.engine import ContainerSpec, Mount, RunResult
from orchestrator.errors import StepFailed


def test_paths_are_rewritten_only_where_a_path_starts_and_back():
    paths = workers.PathMap([("/in/model", "/w/1"), ("/out", "/w/0/1-step"), ("/in/opt/x", "/w/2")])
    text = '--input /in/model/m.h5 --out /out --plan {"file": "/in/opt/x/a.npy"} /in/model2 /x/out /output'
    moved = paths.to_worker(text)
    assert moved == ('--input /w/1/m.h5 --out /w/0/1-step --plan {"file": "/w/2/a.npy"} /in/model2 /x/out '
                     '/output')
    assert paths.to_step(moved) == text


def test_roots_locate_paths_beneath_them_and_keep_read_only_ones_read_only(tmp_path):
    work, model = tmp_path / "work", tmp_path / "model.h5"
    (work / "1-a").mkdir(parents=True)
    model.write_bytes(b"x")
    roots = workers.Roots(rw=[work], ro=[model, model])
    # a file keeps its name in the worker: loaders (Keras) read the format from the extension
    assert [m.target for m in roots.mounts()] == ["/w/0", "/w/1/model.h5"] and roots.mounts()[1].read_only
    assert roots.locate(work / "1-a", read_only=False) == "/w/0/1-a"
    assert roots.locate(model, read_only=True) == "/w/1/model.h5"
    assert roots.locate(model, read_only=False) is None  # a read-only input never becomes writable
    assert roots.locate(tmp_path / "elsewhere", read_only=True) is None
    assert roots.covers(workers.Roots(rw=[work / "1-a"], ro=[model]))
    assert not roots.covers(workers.Roots(rw=[tmp_path]))


def _pool(engine):
    return workers.WorkerPool(engine)


def test_a_conversion_runs_every_step_of_a_stack_in_its_workers_and_removes_them(built_engine, keras_file, tmp_path):
    manifest = pipeline.convert(_pool(built_engine), "keras", keras_file, tmp_path / "out")
    assert manifest["verification"]["passed"]
    started = [s for s in built_engine.specs if s.command and "step_server.py" in " ".join(map(str, s.command))]
    assert started == []  # workers are started, not run
    steps = [s.command for s in built_engine.specs]
    # to_tflite, the reference run, the result run, compare, the report's facts: inside tf2's worker; the report's
    # picture in a bare worker of the Graphviz stack (one that imports nothing ahead: `dot` needs none of it)
    assert sorted(Path(c[1]).name for c in steps) == ["compare.py", "render_graph.py", "report_model.py",
                                                      "run_model.py", "run_model.py", "to_tflite.py"]
    stacks = {images.get_stack(r["stack"]).name for r in manifest["steps"] + manifest["verification"]["steps"]}
    assert len(built_engine.boxes) == 0  # every worker was removed when the conversion ended
    assert stacks == {"tf2"}
    preloads = sorted((s.image.split(":")[0], s.command[s.command.index("--preload") + 1])
                      for s in built_engine.started)
    assert preloads == [("orchestrator/tf1", ""), ("orchestrator/tf2", "tensorflow,numpy,h5py")]  # and tf1's bare one
    # each step works in its own /scratch folder, made by the host beside its output folder, gone once it ended
    assert len(built_engine.scratches) == 6 and all(existed for _, existed in built_engine.scratches)
    assert all(folder.endswith(".scratch") and not Path(folder).exists() for folder, _ in built_engine.scratches)


def test_worker_specs_keep_the_step_hardening_and_mount_only_the_session_roots(built_engine, keras_file, tmp_path):
    pipeline.convert(_pool(built_engine), "keras", keras_file, tmp_path / "out")
    spec = built_engine.started[0]
    assert spec.network == "none" and spec.read_only_root and "ALL" in spec.cap_drop
    # its memory limit: the step's 8g for each of the steps it may run at once (the conversion and the source run)
    assert "no-new-privileges" in spec.security_opt and spec.memory == "16g" and spec.user
    assert workers.SLOTS == 2 and workers.scaled_memory("512m", 3) == "1536m" and workers.scaled_memory("1g", 1) == "1g"
    assert spec.command[1:2] == ["/opt/steps/step_server.py"] and "--preload" in spec.command
    # tf2's worker imports TensorFlow without JAX (stack.json "skip"): TensorFlow's import of it serves no step
    assert spec.command[spec.command.index("--skip") + 1] == "jax"
    mounts = {m.target: m for m in spec.mounts}
    assert mounts["/w/0"].read_only is False and Path(mounts["/w/0"].source).name == ".work"
    assert mounts["/w/1/model.h5"].read_only is True and mounts["/w/1/model.h5"].source == str(keras_file.resolve())
    assert set(mounts) == {"/w/0", "/w/1/model.h5", "/w/ctl"}
    assert spec.pids_limit == 4096
    # each step's working folder (HOME, TMPDIR) goes under the conversion's work folder, on disk: not the tmpfs
    scratch = spec.command[spec.command.index("--scratch") + 1]
    assert scratch.startswith("/w/0/.scratch-")
    assert not list(tmp_path.glob("**/.scratch-*"))  # removed with its worker


def test_a_step_killed_for_memory_takes_its_worker_down_and_reports_as_before(built_engine, keras_file, tmp_path):
    built_engine.behaviours["to_tflite.py"] = exit_with(137, "Killed")
    with pytest.raises(StepFailed, match="memory limit of 8g"):
        pipeline.convert(_pool(built_engine), "keras", keras_file, tmp_path / "out")
    assert built_engine.boxes == {} and not (tmp_path / "out").exists()


def test_a_mount_outside_the_session_runs_in_a_fresh_container(built_engine, tmp_path):
    (tmp_path / "work").mkdir()
    (tmp_path / "other").mkdir()
    spec = ContainerSpec(image=images.get_stack("tf2").tag(), command=["python", "/opt/steps/compare.py", "--out", "/out"],
                         mounts=[Mount(str(tmp_path / "other"), "/out", read_only=False)], worker=("python", "x"))
    with _pool(built_engine).session(rw=[tmp_path / "work"]) as engine:
        engine.run(spec)
    assert built_engine.started == [] and built_engine.specs == [spec]


def test_a_worker_that_never_gets_ready_falls_back_to_fresh_containers(built_engine, keras_file, tmp_path, monkeypatch):
    monkeypatch.setattr(workers, "READY_TIMEOUT", 0.2)
    original = built_engine.start

    def start_broken(spec):
        cid = original(replace_command(spec))
        return cid

    def replace_command(spec):
        from dataclasses import replace
        return replace(spec, command=["sh", "-c", "sleep 30"])

    built_engine.start = start_broken
    logged = []
    manifest = pipeline.convert(_pool(built_engine), "keras", keras_file, tmp_path / "out", log=logged.append)
    assert manifest["verification"]["passed"] and built_engine.boxes == {}
    assert any("did not start; running in a fresh container" in line for line in logged)
    assert all(any(m.target == "/out" for m in s.mounts) for s in built_engine.specs)  # ran as plain steps


def test_the_cache_key_is_the_same_with_and_without_workers(built_engine, keras_file, tmp_path):
    cache = Cache(tmp_path / "cache")
    pipeline.convert(CachedEngine(built_engine, cache), "keras", keras_file, tmp_path / "a")
    plain = sorted(p.name for p in cache.entries.iterdir())
    m = pipeline.convert(CachedEngine(_pool(built_engine), cache), "keras", keras_file, tmp_path / "b")
    assert all(s["cached"] for s in m["steps"] + m["verification"]["steps"])  # every run answered by those keys
    assert sorted(p.name for p in cache.entries.iterdir()) == plain


def test_workers_are_off_with_ORCHESTRATOR_WORKERS_0(monkeypatch):
    monkeypatch.setenv("ORCHESTRATOR_WORKERS", "0")
    assert not workers.enabled()
    monkeypatch.setenv("ORCHESTRATOR_WORKERS", "1")
    assert workers.enabled()


def test_step_output_comes_back_in_the_steps_own_paths(built_engine, keras_file, tmp_path):
    def noisy(spec, out):
        inp = spec.command[spec.command.index("--input") + 1]
        (out / "model.tflite").write_bytes(b"TFL3")
        (out / "step.json").write_text(json.dumps({"artifacts": ["model.tflite"], "versions": {}, "info": {}}))
        return RunResult(0, "", f"read {inp}\n", 0.1)

    built_engine.behaviours["to_tflite.py"] = noisy
    logged = []
    pipeline.convert(_pool(built_engine), "keras", keras_file, tmp_path / "out", verify=False, log=logged.append)
    assert any(line.endswith("read /in/model/model.h5") for line in logged), logged


def test_a_batch_reuses_its_workers_job_after_job(built_engine, tmp_path, keras_file):
    from orchestrator import batch

    text = "jobs:\n" + "".join(f"  - {{from: keras, input: {keras_file}, output_dir: o{i}}}\n" for i in range(4))
    (tmp_path / "jobs.yaml").write_text(text)
    for j in (1, 2):  # as `batch -j J` makes it: jobs share the stack's worker, two steps for each job at once
        built_engine.started.clear()
        for i in range(4):
            if (tmp_path / f"o{i}").exists():
                import shutil
                shutil.rmtree(tmp_path / f"o{i}")
        pool = workers.WorkerPool(built_engine, slots=workers.SLOTS * j)
        records = batch.run_batch(lambda: pool, batch.read_jobs(tmp_path / "jobs.yaml"), workers=j)
        assert all(r["passed"] for r in records), records
        # 4 jobs x 4 runs in tf2, J of them at once: one worker; the 4 report pictures: one bare worker of tf1
        assert sorted(s.image.split(":")[0] for s in built_engine.started) == ["orchestrator/tf1", "orchestrator/tf2"]
        assert built_engine.boxes == {}
        assert all((tmp_path / f"o{i}" / "model.tflite").is_file() for i in range(4))


def test_the_source_run_overlaps_the_conversion_in_a_worker_session_only(built_engine, keras_file, tmp_path):
    """The verification's source run needs nothing the conversion makes: with warm workers it starts with the
    conversion step (here the step waits for it, and fails if it never comes); with fresh containers (no session
    that could stop it) it runs after the step, as before."""
    import threading

    from fakes import ok_step

    source_started = threading.Event()

    def source(spec, out):
        source_started.set()
        return ok_step(spec, out)

    def step(spec, out, wait=5.0):
        if not source_started.wait(wait):
            return RunResult(1, "", "ERROR: the source run did not start meanwhile", 0.1)
        return ok_step(spec, out)

    built_engine.behaviours.update({"run_model.py": source, "to_tflite.py": step})
    manifest = pipeline.convert(_pool(built_engine), "keras", keras_file, tmp_path / "out")
    assert manifest["verification"]["passed"] and [s["name"] for s in manifest["verification"]["steps"]] == [
        "verify_source", "verify_result", "compare"]
    source_started.clear()
    built_engine.behaviours["to_tflite.py"] = lambda spec, out: step(spec, out, wait=0.5)
    with pytest.raises(StepFailed, match="the source run did not start meanwhile"):
        pipeline.convert(built_engine, "keras", keras_file, tmp_path / "fresh")
    assert built_engine.boxes == {}


def test_a_failed_conversion_stops_the_overlapping_source_run_and_leaves_no_worker(built_engine, keras_file,
                                                                                   tmp_path):
    import threading
    import time

    from fakes import ok_step

    release = threading.Event()

    def slow_source(spec, out):
        release.wait(10)
        return ok_step(spec, out) if out.exists() else RunResult(137, "", "", 0.1)  # its worker went meanwhile

    built_engine.behaviours.update({"run_model.py": slow_source, "to_tflite.py": exit_with(1, "ERROR: broken")})
    started = time.monotonic()
    with pytest.raises(StepFailed, match="broken"):
        pipeline.convert(_pool(built_engine), "keras", keras_file, tmp_path / "out")
    release.set()
    assert time.monotonic() - started < 8  # the step's failure did not wait for the source run to end
    assert built_engine.boxes == {} and not (tmp_path / "out").exists()


def _shared_session_specs(tmp_path, names):
    (tmp_path / "work").mkdir()
    specs = []
    for name in names:
        out = tmp_path / "work" / name
        specs.append(ContainerSpec(image=images.get_stack("tf2").tag(), worker=("python", "/opt/steps/step_server.py"),
                                   command=["python", f"/opt/steps/{name}.py", "--out", "/out"],
                                   mounts=[Mount(str(out), "/out", read_only=False)]))
    return specs


@pytest.mark.parametrize("ending", ["stopped", "timed-out"])
def test_a_step_ended_in_a_shared_worker_leaves_its_neighbour_running_then_the_worker_goes(
        built_engine, tmp_path, monkeypatch, ending):
    """Two steps side by side in one worker: the one stopped by its watch (killed alone, CONTROL/ID.kill) or past
    its timeout ends as a fresh container's would; its neighbour finishes; the worker then goes, and the next step
    gets a new one."""
    import threading

    monkeypatch.setattr(workers, "WATCH_EVERY", 0.05)
    release, neighbour_running = threading.Event(), threading.Event()

    def neighbour(spec, out):
        neighbour_running.set()
        release.wait(10)
        return RunResult(0, "finished\n", "", 0.1)

    built_engine.behaviours.update({"neighbour.py": neighbour, "ending.py": (
        lambda spec, out: RunResult(-1, "", "", 0.1, timed_out=True)) if ending == "timed-out" else (
        lambda spec, out: release.wait(10) and None)})
    slow, ends, after = _shared_session_specs(tmp_path, ["neighbour", "ending", "after"])
    results = {}
    with workers.WorkerPool(built_engine, slots=2).session(rw=[tmp_path / "work"]) as session:
        first = threading.Thread(target=lambda: results.setdefault("neighbour", session.run(slow)))
        first.start()
        assert neighbour_running.wait(10)
        watch = (lambda: "the disk limit") if ending == "stopped" else None
        results["ending"] = session.run(ends, watch=watch)
        assert first.is_alive() and len(built_engine.started) == 1  # the same worker, its neighbour still running
        assert len(built_engine.boxes) == 1  # the worker stays while its neighbour runs ...
        release.set()
        first.join(10)
        assert built_engine.boxes == {}  # ... and goes once it ended
        results["after"] = session.run(after)
    assert results["neighbour"].exit_code == 0 and results["neighbour"].stdout == "finished\n"
    if ending == "stopped":
        assert results["ending"].exit_code == 137 and results["ending"].stopped == "the disk limit"
    else:
        assert results["ending"].timed_out
    assert results["after"].exit_code == 0 and len(built_engine.started) == 2 and built_engine.boxes == {}


def test_steps_that_come_while_a_worker_starts_share_it_up_to_its_slots(built_engine, tmp_path):
    import threading

    gate = threading.Barrier(3, timeout=10)

    def together(spec, out):
        gate.wait()  # all three run at once
        return RunResult(0, "", "", 0.1)

    built_engine.behaviours.update({f"s{i}.py": together for i in range(3)})
    specs = _shared_session_specs(tmp_path, ["s0", "s1", "s2"])
    with workers.WorkerPool(built_engine, slots=2).session(rw=[tmp_path / "work"]) as session:
        threads = [threading.Thread(target=session.run, args=(s,)) for s in specs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
    assert len(built_engine.started) == 2  # two slots each: three steps at once need a second worker, not a third
    assert all(s.memory == "16g" for s in built_engine.started) and built_engine.boxes == {}
    with pytest.raises(ValueError):
        workers.WorkerPool(built_engine, slots=0)
