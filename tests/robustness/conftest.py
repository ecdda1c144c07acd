"""The bad-input corpus (issue 15): every case is generated here, into pytest's tmp folders, and run through the real
CLI. Valid models of every format are made once per session (`orchestrator sample`, in their stacks) and shared by
the xdist workers; each case copies and breaks what it needs.

Under CI=true a missing Docker engine is a failure, never a skip. At the end the session prints a tally (cases
tried, handled, per format) and writes it as JSON beside pytest's tmp folders (`robustness-tally.json`, path
printed; ROBUSTNESS_TALLY=FILE writes it there instead). ROBUSTNESS_SAMPLES=DIR keeps the samples in DIR and reuses
them in later runs (made when DIR has none)."""

import fcntl
import json
import os
import sys
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "e2e"))

from clihelp import cached_sample, engine_or_skip, use_sample_cache  # noqa: E402

import corpus  # noqa: E402

os.environ["ORCHESTRATOR_NO_CACHE"] = "1"

# (format, kind): made once per session; corpus.Samples names the files it takes from them
SAMPLES = [("keras", "tf-keras"), ("keras", "keras3"), ("tf_frozen_model", "cnn"), ("onnx", "lrn"),
           ("pytorch", "cnn"), ("darknet", "yolov3-tiny"), ("jax", "dense"), ("ssd", "float")]


@pytest.fixture(scope="session")
def engine():
    return engine_or_skip()


@pytest.fixture(scope="session")
def samples(engine, tmp_path_factory):
    """corpus.Samples over one set of `orchestrator sample` models, made once per run (three at a time) in the
    sample cache the e2e tests share (clihelp.cached_sample), or in ROBUSTNESS_SAMPLES."""
    root = Path(os.environ.get("ROBUSTNESS_SAMPLES") or use_sample_cache(tmp_path_factory))
    root.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda sample: cached_sample(*sample, root=root), SAMPLES))
    with open(root / ".tfjs.making", "w") as lock:  # as clihelp.cached_sample
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "tfjs-graph").exists():  # written last
            corpus.make_tfjs_samples(root)
    return corpus.Samples(root)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


# -- the tally: cases tried and handled, per format (collected where reports arrive: the xdist controller too) ----
TALLY = defaultdict(lambda: {"tried": 0, "handled": 0, "failed": []})
CASES = []  # each case: id, handled, exit code, the last stderr line, seconds


def pytest_runtest_logreport(report):
    props = dict(report.user_properties)
    if "robust_format" not in props:
        return
    if report.when == "call" or (report.when == "setup" and not report.passed):
        row = TALLY[props["robust_format"]]
        if report.skipped:
            row.setdefault("skipped", []).append(props["robust_case"])
            return
        row["tried"] += 1
        if report.passed:
            row["handled"] += 1
        else:
            row["failed"].append(props["robust_case"])
        CASES.append({"case": props["robust_case"], "handled": report.passed, "exit": props.get("robust_exit"),
                      "stderr": props.get("robust_stderr"), "seconds": props.get("robust_seconds")})


def pytest_terminal_summary(terminalreporter, config):
    if not TALLY:
        return
    tried = sum(r["tried"] for r in TALLY.values())
    handled = sum(r["handled"] for r in TALLY.values())
    write = terminalreporter.write_line
    terminalreporter.section("bad-input corpus (tests/robustness)")
    write(f"{tried} cases tried, {handled} handled, {tried - handled} not")
    for fmt in sorted(TALLY):
        row = TALLY[fmt]
        extra = f"  not handled: {', '.join(row['failed'])}" if row["failed"] else ""
        extra += f"  skipped: {', '.join(row['skipped'])}" if row.get("skipped") else ""
        write(f"  {fmt:26} {row['handled']:3} of {row['tried']:3} handled{extra}")
    target = os.environ.get("ROBUSTNESS_TALLY")
    if target:
        path = Path(target)
    else:
        path = config._tmp_path_factory.getbasetemp() / "robustness-tally.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"tried": tried, "handled": handled, "formats": dict(TALLY),
                                "cases": sorted(CASES, key=lambda c: c["case"])}, indent=2) + "\n")
    write(f"tally written to {path}")
