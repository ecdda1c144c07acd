"""The conversion cache (orchestrator/cache.py) on the fake engine: a repeated conversion is answered from the cache,
and no entry is served when any part of its key differs."""

import os
import time
from pathlib import Path

import pytest

from orchestrator import cache as cache_mod
from orchestrator import pipeline
from orchestrator.cache import Cache, CachedEngine, parse_age, parse_size


@pytest.fixture
def cached(built_engine, tmp_path):
    return CachedEngine(built_engine, Cache(tmp_path / "cache", max_bytes=1 << 30))


def runs(m):
    return list(m["steps"]) + list(m["verification"]["steps"])


def convert(engine, model, out, **kw):
    return pipeline.convert(engine, "keras", model, out, **kw)


def test_a_repeated_conversion_is_answered_from_the_cache(cached, built_engine, keras_file, tmp_path):
    first = convert(cached, keras_file, tmp_path / "a")
    containers = len(built_engine.specs)
    # the step, the source and result runs, the compare, the report's facts and its picture
    assert containers == 6 and not any(r["cached"] for r in runs(first))
    second = convert(cached, keras_file, tmp_path / "b")
    assert len(built_engine.specs) == containers  # no container ran, not even the report's
    assert second["model"]["latency"] == first["model"]["latency"] and (tmp_path / "b" / "report.html").is_file()
    assert all(r["cached"] for r in runs(second)) and len(runs(second)) == 4
    assert all(r["seconds"] == 0.0 and r["cached_seconds"] is not None for r in runs(second))
    assert (tmp_path / "b" / "model.tflite").read_bytes() == (tmp_path / "a" / "model.tflite").read_bytes()
    assert second["verification"]["passed"] is True
    assert "4 of 4 runs from the cache" in pipeline.summary(second)


@pytest.mark.parametrize("change", ["input", "image", "option", "version", "environment"])
def test_no_entry_is_served_when_any_part_of_its_key_differs(change, cached, built_engine, keras_file, tmp_path,
                                                             monkeypatch):
    convert(cached, keras_file, tmp_path / "a", options={"quantize": "float16"})
    before = len(built_engine.specs)
    options = {"quantize": "float16"}
    if change == "input":
        keras_file.write_bytes(keras_file.read_bytes() + b"\0")
    elif change == "image":  # the same tag, rebuilt: another image id
        for info in built_engine.images.values():
            info["id"] += "-rebuilt"
    elif change == "option":
        options = {"quantize": "dynamic"}
    elif change == "version":
        monkeypatch.setattr(cache_mod, "__version__", "999")
    else:
        monkeypatch.setattr("orchestrator.runner.container_spec", _with_environment({"EXTRA": "1"}))
    m = convert(cached, keras_file, tmp_path / "b", options=options)
    step, source_run = m["steps"][0], m["verification"]["steps"][0]
    if change == "input":  # the runs that read the changed file miss (the fake's later outputs are byte-equal)
        assert not step["cached"] and not source_run["cached"]
    elif change == "option":  # the conversion misses; the reference run of the same source is rightly shared
        assert not step["cached"] and source_run["cached"]
    else:  # image id, orchestrator version, environment: part of every run's key
        assert not any(r["cached"] for r in runs(m))
    assert len(built_engine.specs) > before


def _with_environment(extra):
    from orchestrator import runner

    plain = runner.container_spec

    def spec(run, **kw):
        made = plain(run, **kw)
        made.environment.update(extra)
        return made
    return spec


def test_a_failed_run_is_not_stored(cached, built_engine, keras_file, tmp_path):
    from fakes import exit_with

    built_engine.behaviours["to_tflite.py"] = exit_with(1, "boom\n")
    with pytest.raises(Exception):
        convert(cached, keras_file, tmp_path / "a")
    assert cached.cache.list() == []


def test_prune_by_age_then_by_size_least_recently_used_first(cached, keras_file, tmp_path):
    convert(cached, keras_file, tmp_path / "a")
    cache = cached.cache
    rows = cache.list()
    assert len(rows) == 6 and all(r["size"] > 0 for r in rows)  # 4 runs, the report's facts and picture
    old = cache.entries / rows[-1]["key"] / "entry.json"
    os.utime(old, (time.time() - 10 * 86400,) * 2)
    assert cache.prune(older_than=parse_age("7d")) == (1, rows[-1]["size"])
    rest = cache.list()
    removed, _ = cache.prune(max_bytes=rest[0]["size"])
    assert removed == len(rest) - 1 and [r["key"] for r in cache.list()] == [rest[0]["key"]]


def test_sizes_and_ages_parse():
    assert parse_size("5G") == 5 << 30 and parse_size("500M") == 500 << 20 and parse_size("1024") == 1024
    assert parse_age("7d") == 7 * 86400 and parse_age("12h") == 43200 and parse_age("90") == 90
    with pytest.raises(Exception, match="not a size"):
        parse_size("lots")


def test_an_entry_that_cannot_be_copied_leaves_the_folder_empty_for_the_real_run(tmp_path, monkeypatch):
    cache = Cache(tmp_path / "cache", max_bytes=1 << 30)
    (tmp_path / "made" / "sub").mkdir(parents=True)
    (tmp_path / "made" / "model.tflite").write_bytes(b"x")
    cache.put("k" * 64, tmp_path / "made", {"step": "s"})
    out = tmp_path / "out"
    out.mkdir()

    def half_copy(src, dst, **kw):  # the entry vanishes (pruned by another process) halfway through the copy
        (Path(dst) / "sub").mkdir()
        (Path(dst) / "model.tflite").write_bytes(b"x")
        raise FileNotFoundError(src)

    monkeypatch.setattr(cache_mod.shutil, "copytree", half_copy)
    assert cache.get("k" * 64, out) is None and list(out.iterdir()) == []
