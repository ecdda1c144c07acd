import json

import numpy as np
import pytest

from clihelp import cli, last_line

pytestmark = pytest.mark.e2e


def assert_clean_failure(proc, tmp_path, code, *fragments):
    assert proc.returncode == code, proc.stderr[-2000:]
    line = last_line(proc)
    assert line.startswith("orchestrator: error: ")
    for fragment in fragments:
        assert fragment in line, line
    assert "Traceback" not in proc.stderr
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".out") or p.name == "out"]
    assert leftovers == []


# host-only refusals (missing file, random bytes, URLs, missing options): tests/unit/test_cli.py; every
# format's bad inputs: tests/robustness


def test_truncated_h5_is_refused_on_the_host(samples, tmp_path):
    good = (samples[("keras", "cnn")] / "model.h5").read_bytes()
    bad = tmp_path / "truncated.h5"
    bad.write_bytes(good[: len(good) // 3])
    proc = cli("convert", "keras", bad, tmp_path / "out")
    assert_clean_failure(proc, tmp_path, 2, str(bad), "is not a readable HDF5 file: truncated or corrupt")


def test_odd_names_convert(samples, tmp_path):
    """A leading dash, quotes, a newline, a colon, shell syntax: names are data, never parsed (a name that is not UTF-8
    cannot reach the Docker engine and is refused: tests/robustness)."""
    name = "-my 'mo\ndel' \"v2\" $(id):x.h5"
    (tmp_path / name).write_bytes((samples[("keras", "cnn")] / "model.h5").read_bytes())
    proc = cli("convert", "keras", name, "out 'a' b", "--no-verify", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "out 'a' b" / "model.tflite").is_file()


def test_wrong_from(samples, tmp_path):
    proc = cli("convert", "tf_saved_model", samples[("keras", "cnn")] / "model.h5", tmp_path / "out")
    assert_clean_failure(proc, tmp_path, 2, "model.h5", "is a file")
    proc = cli("convert", "kerass", samples[("keras", "cnn")] / "model.h5", tmp_path / "out")
    assert_clean_failure(proc, tmp_path, 2, "unknown format 'kerass'")


def test_unknown_signature(samples, tmp_path):
    proc = cli("convert", "tf_saved_model", samples[("tf_saved_model", "multi")] / "saved_model", tmp_path / "out",
               "--signature_name", "nope")
    assert_clean_failure(proc, tmp_path, 2, "no signature 'nope'", "serving_default")


def test_unknown_frozen_array(samples, tmp_path):
    src = samples[("tf_frozen_model", "multi")]
    proc = cli("convert", "tf_frozen_model", src / "frozen_model.pb", tmp_path / "out", "--input_arrays", "a,b",
               "--output_arrays", "nothere", "--input_shapes", "1,8:1,4")
    assert_clean_failure(proc, tmp_path, 2, "no tensor 'nothere'")


def test_sample_input_of_wrong_shape(samples, tmp_path):
    np.save(tmp_path / "wrong.npy", np.zeros((1, 7), "float32"))
    proc = cli("convert", "keras", samples[("keras", "cnn")] / "model.h5", tmp_path / "out",
               "--sample_input", tmp_path / "wrong.npy")
    assert_clean_failure(proc, tmp_path, 2, "wrong.npy", "does not fit input 'image'")


def test_failed_parity_exits_4_and_writes_nothing(samples, tmp_path):
    src = samples[("keras", "cnn")]
    proc = cli("convert", "keras", src / "model.h5", tmp_path / "out", "--quantize", "int8",
               "--calibration", src / "calibration.npy", "--tolerance", "0")
    assert_clean_failure(proc, tmp_path, 4, "verification failed", "output 'probs'")


def test_no_verify_keeps_a_result_that_would_fail(samples, tmp_path):
    src = samples[("keras", "cnn")]
    proc = cli("convert", "keras", src / "model.h5", tmp_path / "out", "--quantize", "int8",
               "--calibration", src / "calibration.npy", "--tolerance", "0", "--no-verify")
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert m["verification"] == {"skipped": True, "reason": "--no-verify"}
