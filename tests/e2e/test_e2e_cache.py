"""The conversion cache through the real CLI: a repeated conversion reuses its steps and its verification, says so
in the manifest and the summary, and gives the same files; `cache list|prune` and --no-cache."""

import os

import pytest

from clihelp import cli, manifest

pytestmark = pytest.mark.e2e


def test_a_repeated_conversion_comes_from_the_cache(samples, tmp_path):
    env = dict(os.environ, ORCHESTRATOR_NO_CACHE="", ORCHESTRATOR_NO_REPORT="",
               ORCHESTRATOR_CACHE_DIR=str(tmp_path / "cache"))
    model = samples[("keras", "cnn")] / "model.h5"

    def convert(out, *extra, quantize="float16"):
        proc = cli("convert", "keras", model, tmp_path / out, "--to", "tflite", "--quantize", quantize, *extra,
                   env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return manifest(tmp_path / out), proc

    first, _ = convert("first")
    second, proc = convert("second")
    runs = lambda m: m["steps"] + m["verification"]["steps"]  # noqa: E731
    assert not any(r["cached"] for r in runs(first))
    assert all(r["cached"] for r in runs(second)) and len(runs(second)) == 4
    assert "4 of 4 runs from the cache" in proc.stdout
    assert (tmp_path / "second" / "model.tflite").read_bytes() == (tmp_path / "first" / "model.tflite").read_bytes()
    assert second["verification"]["passed"] is True
    assert second["timings"]["total_seconds"] < first["timings"]["total_seconds"]
    listed = cli("cache", "list", env=env)
    # the 4 runs, the report's facts and its picture
    assert listed.returncode == 0 and "6 entries" in listed.stdout and "keras_to_tflite" in listed.stdout
    # --no-cache runs everything again; a changed option misses the conversion step
    third, _ = convert("third", "--no-cache")
    assert not any(r["cached"] for r in runs(third))
    dynamic, _ = convert("dynamic", quantize="dynamic")
    assert not dynamic["steps"][0]["cached"] and dynamic["verification"]["steps"][0]["cached"]
    # the float twin (a second conversion) is made for the report only: under --no-report the step is not the same
    # (no cache hit), and what it stored holds no twin
    twins = lambda: sorted((tmp_path / "cache").rglob("float_reference.tflite"))  # noqa: E731
    assert len(twins()) == 2  # float16 and dynamic, each with its report
    bare, _ = convert("bare", "--no-report", quantize="dynamic")
    assert not bare["steps"][0]["cached"] and bare["steps"][0]["command"][-2:] == ["--float_reference", "false"]
    assert len(twins()) == 2 and (tmp_path / "bare" / "model.tflite").is_file()
    pruned = cli("cache", "prune", "--all", env=env)
    assert pruned.returncode == 0 and pruned.stdout.startswith("removed ")
    assert "0 entries" in cli("cache", "list", env=env).stdout
