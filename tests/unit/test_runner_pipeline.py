import json
import os
from pathlib import Path

import pytest

from fakes import LAYERS_TOPOLOGY, FakeEngine, exit_with, failing_compare, ok_step
from orchestrator import pipeline, runner
from orchestrator.engine import RunResult
from orchestrator.errors import (InputError, StepFailed, StepRejectedInput, UsageError, VerificationFailed,
                                 error_line)


def _run(tmp_path, **kw):
    return runner.StepRun("keras_to_tflite", runner.StackImage("tf2", "orchestrator/tf2:abc", "sha256:x"), "to_tflite.py",
                          ["--input", "/in/model/m.h5"], {str(tmp_path / "m.h5"): "/in/model/m.h5"},
                          tmp_path / "out", **kw)


def test_container_spec_is_isolated(tmp_path):
    spec = runner.container_spec(_run(tmp_path), memory="2g", timeout=60)
    assert spec.network == "none"
    assert spec.user == f"{os.getuid()}:{os.getgid()}"
    assert spec.memory == "2g" and spec.timeout == 60
    assert spec.read_only_root and "ALL" in spec.cap_drop and "no-new-privileges" in spec.security_opt
    mounts = {m.target: m for m in spec.mounts}
    assert mounts["/in/model/m.h5"].read_only is True
    assert mounts["/in/model/m.h5"].source == str((tmp_path / "m.h5").resolve())
    assert mounts["/out"].read_only is False
    assert spec.command[:2] == ["python", "/opt/steps/to_tflite.py"] and spec.command[-2:] == ["--out", "/out"]
    assert spec.pids_limit and spec.pids_limit <= 4096
    # converters' scratch: a folder on the host's disk beside the step's output, not the memory-counted tmpfs
    assert mounts["/scratch"].read_only is False and mounts["/scratch"].source == str((tmp_path / "out.scratch"))
    assert spec.environment["HOME"] == spec.environment["TMPDIR"] == spec.working_dir == "/scratch"
    assert spec.tmpfs["/tmp"].endswith("size=512m")
    assert spec.max_file_size == 64 << 30  # RLIMIT_FSIZE: no single file fills the host's disk


def test_the_largest_file_a_step_may_write_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ORCHESTRATOR_MAX_FILE_SIZE", "64M")
    assert runner.container_spec(_run(tmp_path)).max_file_size == 64 << 20
    monkeypatch.setenv("ORCHESTRATOR_MAX_FILE_SIZE", "lots")
    with pytest.raises(UsageError, match="'LOTS' is not a size"):
        runner.container_spec(_run(tmp_path))


def test_the_scratch_folder_is_gone_after_the_step_whatever_its_end(tmp_path):
    seen = []

    def writes_scratch(spec, out):
        scratch = next(m.source for m in spec.mounts if m.target == "/scratch")
        (Path(scratch) / "big.tmp").write_bytes(b"x" * 100)
        seen.append(scratch)
        return RunResult(1, "", "ValueError: boom", 0.1)

    with pytest.raises(StepFailed):
        runner.execute(FakeEngine(behaviours={"to_tflite.py": writes_scratch}), _run(tmp_path))
    assert seen and not Path(seen[0]).exists()


def test_each_step_gets_a_fresh_output_folder(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(FileExistsError):
        runner.execute(FakeEngine(), _run(tmp_path))


def test_failed_step_carries_step_image_status_and_stderr_tail(tmp_path):
    engine = FakeEngine(behaviours={"to_tflite.py": exit_with(1, "noise\nTraceback...\nValueError: boom\n")})
    with pytest.raises(StepFailed) as err:
        runner.execute(engine, _run(tmp_path))
    e = err.value
    assert (e.step, e.image, e.exit_status, e.exit_code) == ("keras_to_tflite", "orchestrator/tf2:abc", 1, 3)
    assert "ValueError: boom" in e.stderr_tail and str(e).endswith("ValueError: boom")
    assert e.command[1] == "/opt/steps/to_tflite.py"


def test_rejected_input_maps_to_exit_2_with_host_path(tmp_path):
    engine = FakeEngine(behaviours={"to_tflite.py": exit_with(65, "ERROR: /in/model/m.h5: cannot load\n")})
    with pytest.raises(StepRejectedInput) as err:
        runner.execute(engine, _run(tmp_path))
    assert err.value.exit_code == 2
    assert str(err.value) == f"{tmp_path / 'm.h5'}: cannot load"


def test_timeout_and_memory_kill_are_explained(tmp_path):
    with pytest.raises(StepFailed, match="timed out after 5 s"):
        runner.execute(FakeEngine(behaviours={"to_tflite.py": exit_with(-1, timed_out=True)}), _run(tmp_path),
                       timeout=5)
    with pytest.raises(StepFailed, match="killed by SIGKILL, probably over the memory limit of 64m; raise it with "
                                         "--memory"):
        runner.execute(FakeEngine(behaviours={"to_tflite.py": exit_with(137)}), _run(tmp_path / "b"),
                       memory="64m")


LOG_NOISE = ("W0000 00:00:1732300000.123456  4121 computation_placer.cc:177] computation placer already registered. "
             "Please check linkage and avoid linking the same target more than once.\n")


@pytest.mark.parametrize("stderr, oom, says", [
    # the engine saw the kernel's out-of-memory killer: certain, and the log line is not the error
    (LOG_NOISE, True, "(killed by SIGKILL at the memory limit of 3g; raise it with --memory)"),
    # the step's child was killed (step_sdk.stop_if_killed's line)
    (LOG_NOISE + "ERROR: onnx2tf attempt 'default' was killed by the kernel's out-of-memory killer (the "
     "container's memory limit)\n", False,
     "(killed by SIGKILL at the memory limit of 3g; raise it with --memory): onnx2tf attempt 'default' was killed"),
    ("Fatal Python error: Segmentation fault\n" + LOG_NOISE, False, "(killed by SIGSEGV): Fatal Python error"),
])
def test_a_step_killed_by_a_signal_names_it_and_the_limit_never_a_log_line(tmp_path, stderr, oom, says):
    code = 139 if "SIGSEGV" in says else 137
    with pytest.raises(StepFailed) as err:
        runner.execute(FakeEngine(behaviours={"to_tflite.py": exit_with(code, stderr, oom_killed=oom)}),
                       _run(tmp_path), memory="3g")
    assert says in str(err.value) and "computation placer" not in str(err.value)
    assert err.value.exit_code == 3


@pytest.mark.parametrize("stderr, line", [
    (LOG_NOISE, ""),
    ("Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: bad shape\n" + LOG_NOISE,
     "ValueError: bad shape"),
    ("ERROR: the step's own words\nUserWarning: later noise\n", "ERROR: the step's own words"),
    ("tensorflow.python.framework.errors_impl.InvalidArgumentError: x\n2026-11-23 05:00:00.1: I tensorflow/x\n",
     "tensorflow.python.framework.errors_impl.InvalidArgumentError: x"),
    ("Error: Unsupported Ops in the model: Foo\n", "Error: Unsupported Ops in the model: Foo"),
])
def test_the_error_line_is_the_real_error_never_a_log_line(stderr, line):
    assert error_line(stderr) == line


# -- pipeline ---------------------------------------------------------------------------------
def test_convert_writes_artifact_manifest_and_verification(built_engine, keras_file, tmp_path):
    out = tmp_path / "out"
    manifest = pipeline.convert(built_engine, "keras", keras_file, out, options={"quantize": "float16"})
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.tflite", "report.html", "verification"]
    assert manifest["report"] == "report.html" and manifest["model"]["format"] == "tflite"
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["route"] == {"from": "keras", "to": "tflite", "steps": ["keras_to_tflite"]}
    assert on_disk["input"]["sha256"]["model.h5"] == pipeline.sha256_file(keras_file)
    assert on_disk["artifacts"]["model.tflite"] == pipeline.sha256_file(out / "model.tflite")
    assert on_disk["options"] == {"quantize": "float16"}
    step = on_disk["steps"][0]
    assert step["stack"] == "tf2" and step["image"].startswith("orchestrator/tf2:") and step["image_id"]
    assert step["versions"] == {"tensorflow": "fake"}
    assert on_disk["verification"]["passed"] is True
    assert manifest["output_dir"] == str(out.absolute())
    scripts = [os.path.basename(s.command[1]) for s in built_engine.specs]
    assert scripts == ["to_tflite.py", "run_model.py", "run_model.py", "compare.py", "report_model.py",
                       "render_graph.py"]
    assert "--quantize" in built_engine.specs[0].command and "float16" in built_engine.specs[3].command
    # nothing left beside the output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.h5", "out"]


def test_failed_step_leaves_nothing_half_written(built_engine, keras_file, tmp_path):
    built_engine.behaviours["to_tflite.py"] = exit_with(1, "boom")
    with pytest.raises(StepFailed):
        pipeline.convert(built_engine, "keras", keras_file, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.h5"]


def test_failed_verification_exits_4_and_writes_nothing(built_engine, keras_file, tmp_path):
    built_engine.behaviours["compare.py"] = failing_compare
    with pytest.raises(VerificationFailed, match=r"output 'y' differs by 0.5 of its scale") as err:
        pipeline.convert(built_engine, "keras", keras_file, tmp_path / "out")
    assert err.value.exit_code == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.h5"]


def test_no_verify_skips_the_runs_and_says_so(built_engine, keras_file, tmp_path):
    built_engine.behaviours["compare.py"] = failing_compare
    m = pipeline.convert(built_engine, "keras", keras_file, tmp_path / "out", verify=False)
    assert m["verification"] == {"skipped": True, "reason": "--no-verify"}
    assert [Path(s.command[1]).name for s in built_engine.specs] == ["to_tflite.py", "report_model.py",
                                                                       "render_graph.py"]


def test_no_report_runs_only_the_conversion(built_engine, keras_file, tmp_path):
    m = pipeline.convert(built_engine, "keras", keras_file, tmp_path / "out", verify=False, report=False)
    assert len(built_engine.specs) == 1 and "model" not in m and not (tmp_path / "out" / "report.html").exists()


def test_existing_output_needs_force_and_is_replaced_only_on_success(built_engine, keras_file, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("keep me until success")
    with pytest.raises(UsageError, match="exists and is not empty"):
        pipeline.convert(built_engine, "keras", keras_file, out)
    built_engine.behaviours["to_tflite.py"] = exit_with(1, "boom")
    with pytest.raises(StepFailed):
        pipeline.convert(built_engine, "keras", keras_file, out, force=True)
    assert (out / "old.txt").exists()
    del built_engine.behaviours["to_tflite.py"]
    pipeline.convert(built_engine, "keras", keras_file, out, force=True)
    assert not (out / "old.txt").exists() and (out / "model.tflite").exists()


def test_calibration_is_mounted_read_only(built_engine, keras_file, tmp_path):
    cal = tmp_path / "cal.npy"
    cal.write_bytes(b"x")
    pipeline.convert(built_engine, "keras", keras_file, tmp_path / "out",
                     options={"quantize": "int8", "calibration": str(cal)}, verify=False)
    spec = built_engine.specs[0]
    mount = next(m for m in spec.mounts if m.source == str(cal.resolve()))
    assert mount.read_only and mount.target in spec.command


def test_bad_input_fails_before_any_container(built_engine, tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"garbage" * 20)
    with pytest.raises(InputError, match="bad.h5: is not a Keras model"):
        pipeline.convert(built_engine, "keras", bad, tmp_path / "out")
    assert built_engine.specs == [] and not (tmp_path / "out").exists()


def _layers_model(folder, weights_folder):
    folder.mkdir()
    weights_folder.mkdir(exist_ok=True)
    (folder / "model.json").write_text(json.dumps({
        "format": "layers-model", "modelTopology": LAYERS_TOPOLOGY,
        "weightsManifest": [{"paths": ["group1-shard1of1.bin"], "weights": [{"name": "w", "shape": [2],
                                                                              "dtype": "float32"}]}]}))
    (weights_folder / "group1-shard1of1.bin").write_bytes(b"\0" * 8)
    return folder / "model.json"


def test_weights_path_prefix_gathers_shards_and_model_tflite_names_the_result(built_engine, tmp_path):
    model = _layers_model(tmp_path / "m", tmp_path / "weights")
    m = pipeline.convert(built_engine, "tfjs_layers_model", model, tmp_path / "out",
                         options={"weights_path_prefix": str(tmp_path / "weights"), "model_tflite": "gesture.tflite"})
    assert (tmp_path / "out" / "gesture.tflite").is_file() and not (tmp_path / "out" / "model.tflite").exists()
    assert "gesture.tflite" in m["artifacts"]
    assert set(m["input"]["sha256"]) == {"model.json", "group1-shard1of1.bin"}
    first = built_engine.specs[0]
    assert "--weights_path_prefix" not in first.command  # consumed on the host
    gathered = next(mt.source for mt in first.mounts if mt.target == "/in/model")
    assert gathered.endswith("/input/tfjs")


def test_missing_shard_under_weights_path_prefix(built_engine, tmp_path):
    model = _layers_model(tmp_path / "m", tmp_path / "m")
    with pytest.raises(InputError, match="weight shard 'group1-shard1of1.bin' is missing"):
        pipeline.convert(built_engine, "tfjs_layers_model", model, tmp_path / "out",
                         options={"weights_path_prefix": str(tmp_path)})


def test_model_tflite_must_be_a_tflite_file_name(built_engine, keras_file, tmp_path):
    with pytest.raises(UsageError, match="--model_tflite wants a file name ending in .tflite"):
        pipeline.convert(built_engine, "keras", keras_file, tmp_path / "out", options={"model_tflite": "../x.bin"})


# -- a step-choosing option given "auto" (--converter auto): every route tried, the best verified one kept -------
def _attempt(spec):
    return next((m.source.split("attempt-")[1].split("/")[0] for m in spec.mounts if "attempt-" in m.source), None)


def _ssd_engine(built_engine, transposes, failing=()):
    from fakes import ok_step, verification_record

    def export(spec, out):
        (out / "tflite_graph.pb").write_bytes(b"\x0a\x00")
        (out / "step.json").write_text(json.dumps({"artifacts": ["tflite_graph.pb"], "versions": {}, "info": {}}))

    def convert(size):
        def behaviour(spec, out):
            (out / "model.tflite").write_bytes(b"\x00\x00\x00\x00TFL3" + b"x" * size)
            (out / "step.json").write_text(json.dumps({"artifacts": ["model.tflite"], "versions": {}, "info": {}}))
        return behaviour

    def run(spec, out):
        ok_step(spec, out)
        if "--inputs" in spec.command:  # the result's run: its converter's TRANSPOSE count
            info = json.loads((out / "run.json").read_text())
            (out / "run.json").write_text(json.dumps(dict(info, transpose_ops=transposes[_attempt(spec)])))

    def compare(spec, out):
        ok_step(spec, out)
        if _attempt(spec) in failing:
            (out / "verification.json").write_text(json.dumps(verification_record(False, 0.5)))

    built_engine.behaviours.update({"ssd_export.py": export, "ssd_toco.py": convert(100), "ssd_mlir.py": convert(50),
                                    "run_model.py": run, "run_ssd_graph.py": run, "compare.py": compare})
    return built_engine


def test_converter_auto_keeps_the_verified_result_with_fewest_transposes(built_engine, tmp_path):
    from test_ssd import model_dir

    engine = _ssd_engine(built_engine, {"toco": 0, "mlir": 2})
    m = pipeline.convert(engine, "ssd", model_dir(tmp_path), tmp_path / "out", options={"converter": "auto"})
    assert m["route"]["steps"] == ["ssd_export", "ssd_toco"] and m["options"]["converter"] == "auto"
    assert [(a["converter"], a["passed"], a.get("chosen", False), a["transpose_ops"]) for a in m["attempts"]] == [
        ("toco", True, True, 0), ("mlir", True, False, 2)]
    assert (tmp_path / "out" / "model.tflite").stat().st_size == 108 and (tmp_path / "out" / "verification").is_dir()
    assert "chose --converter toco (0 TRANSPOSE, 0.000108 MB) over mlir (2 TRANSPOSE" in pipeline.summary(m)


def test_converter_auto_breaks_ties_by_size_and_skips_what_failed(built_engine, tmp_path):
    from test_ssd import model_dir

    engine = _ssd_engine(built_engine, {"toco": 1, "mlir": 1})
    m = pipeline.convert(engine, "ssd", model_dir(tmp_path), tmp_path / "a", options={"converter": "auto"})
    assert m["route"]["steps"][-1] == "ssd_mlir"  # the smaller file
    engine = _ssd_engine(built_engine, {"toco": 1, "mlir": 0}, failing=("mlir",))
    (tmp_path / "b").mkdir()
    m = pipeline.convert(engine, "ssd", model_dir(tmp_path / "b"), tmp_path / "b-out",
                         options={"converter": "auto"})
    assert m["route"]["steps"][-1] == "ssd_toco" and "differs by 0.5" in m["attempts"][1]["error"]


def test_converter_auto_with_no_verified_attempt_fails_naming_each_and_writes_nothing(built_engine, tmp_path):
    from orchestrator.errors import AttemptsFailed
    from test_ssd import model_dir

    engine = _ssd_engine(built_engine, {"toco": 0, "mlir": 0}, failing=("toco", "mlir"))
    model = model_dir(tmp_path)
    with pytest.raises(AttemptsFailed, match=r"--converter auto: no attempt gave a verified result: toco: "
                                             r"verification failed: .*; mlir: verification failed") as err:
        pipeline.convert(engine, "ssd", model, tmp_path / "out", options={"converter": "auto"})
    assert err.value.exit_code == 4 and sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    with pytest.raises(UsageError, match="cannot run with --no-verify"):
        pipeline.plan_job("ssd", model, options={"converter": "auto"}, verify=False)


def test_containers_left_by_a_process_that_is_gone_are_reaped_and_no_others():
    import socket
    import subprocess

    from orchestrator.engine import ContainerSpec

    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid with no process behind it now
    host = socket.gethostname()
    engine = FakeEngine()
    owners = {"mine": runner.owner(), "gone": f"{host}:{dead.pid}:12345", "reused": f"{host}:{os.getpid()}:1",
              "elsewhere": f"another-host:{dead.pid}:12345", "garbled": "nonsense"}
    ids = {name: engine.start(ContainerSpec(image="x", command=["sleep"], labels={runner.OWNER_LABEL: value}))
           for name, value in owners.items()}
    engine.start(ContainerSpec(image="x", command=["sleep"]))  # not the orchestrator's: no owner label
    assert runner.reap_orphans(engine) == 2
    assert set(engine.boxes) == {ids["mine"], ids["elsewhere"], ids["garbled"], "fake-5"}
    assert runner.reap_orphans(engine) == 0


def test_every_container_carries_its_owner():
    spec = runner.container_spec(runner.StepRun("s", runner.StackImage("tf2", "t", "i"), "s.py", out_dir=Path("o")))
    assert spec.labels[runner.OWNER_LABEL] == runner.owner()
    host, pid, started = runner.owner().split(":")
    assert int(pid) == os.getpid() and started.isdigit()


def _writes(files, size, then_sleep=0.0):
    """A step that writes `files` files of `size` bytes into its output folder (then lingers)."""
    def behaviour(spec, out):
        import time

        for i in range(files):
            (out / f"fill-{i}").write_bytes(b"\1" * size)
        time.sleep(then_sleep)
        if not out.exists():  # stopped meanwhile: its worker, and its folders, are gone
            return RunResult(137, "", "", then_sleep)
        return ok_step(spec, out)
    return behaviour


def test_many_files_past_the_write_limit_stop_the_step_naming_the_limit(tmp_path, monkeypatch):
    monkeypatch.setenv("ORCHESTRATOR_MAX_WRITE", "2M")
    with pytest.raises(StepFailed) as err:
        runner.execute(FakeEngine(behaviours={"to_tflite.py": _writes(6, 512 * 1024)}), _run(tmp_path))
    assert "stopped: it wrote 3 MiB into its folders, over the 2 MiB a step may write (ORCHESTRATOR_MAX_WRITE)" \
        in str(err.value) and err.value.exit_code == 3
    runner.execute(FakeEngine(behaviours={"to_tflite.py": _writes(3, 512 * 1024)}), _run(tmp_path / "b"))


def test_the_write_limit_counts_blocks_and_keeps_a_reserve_of_the_free_disk(tmp_path, monkeypatch):
    sparse = tmp_path / "sparse"
    with open(sparse, "wb") as fh:  # 10 GB long, a few blocks on disk: not 10 GB written
        fh.seek(10 ** 10)
        fh.write(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "real").write_bytes(b"\1" * (1 << 20))
    (tmp_path / "link").symlink_to("/")  # not followed
    assert (1 << 20) <= runner._disk_bytes(tmp_path) < (2 << 20)
    monkeypatch.setenv("ORCHESTRATOR_MAX_WRITE", "100000G")
    limit = runner.WriteLimit([tmp_path])
    free = __import__("shutil").disk_usage(tmp_path).free  # other processes write meanwhile: within 256 MiB
    assert abs(limit.limit - (free - runner.DISK_RESERVE)) < (256 << 20) and "the free disk space but 1.0 GiB" in \
        limit.why
    assert limit() is None


def test_a_step_in_a_worker_past_the_write_limit_takes_its_worker_down(built_engine, keras_file, tmp_path,
                                                                        monkeypatch):
    from orchestrator import workers

    monkeypatch.setenv("ORCHESTRATOR_MAX_WRITE", "2M")
    built_engine.behaviours["to_tflite.py"] = _writes(6, 512 * 1024, then_sleep=2.5)
    with pytest.raises(StepFailed, match="stopped: it wrote 3 MiB into its folders"):
        pipeline.convert(workers.WorkerPool(built_engine), "keras", keras_file, tmp_path / "out")
    assert built_engine.boxes == {} and not (tmp_path / "out").exists()


def test_a_quantized_conversions_float_twin_feeds_the_report_and_is_not_placed(built_engine, keras_file, tmp_path):
    def with_twin(spec, out):  # as tflite_convert.py: the twin only when told (--float_reference true)
        result = ok_step(spec, out)
        if spec.command[spec.command.index("--float_reference") + 1] == "true":
            (out / "float_reference.tflite").write_bytes(b"\x00\x00\x00\x00TFL3twin")
        return result

    built_engine.behaviours["to_tflite.py"] = with_twin
    pipeline.convert(built_engine, "keras", keras_file, tmp_path / "out", options={"quantize": "dynamic"})
    report = next(s.command for s in built_engine.specs if s.command[1].endswith("report_model.py"))
    assert report[report.index("--float_reference") + 1] == "/model/float_reference.tflite"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["manifest.json", "model.tflite", "report.html",
                                                                    "verification"]
    # without a report nothing reads the twin: the step is told not to make it (a second conversion)
    built_engine.specs.clear()
    m = pipeline.convert(built_engine, "keras", keras_file, tmp_path / "bare", options={"quantize": "dynamic"},
                         report=False)
    convert = next(s.command for s in built_engine.specs if s.command[1].endswith("to_tflite.py"))
    assert convert[convert.index("--float_reference") + 1] == "false"
    assert m["steps"][0]["command"][-2:] == ["--float_reference", "false"]  # its cache key differs from a report's
