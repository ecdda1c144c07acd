"""The verification criterion (images/shared/parity.py), input plans (verify_io.py and the host's verify.py):
pure numpy and plain data, no Docker."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "images" / "shared"))

import parity  # noqa: E402
import verify_io  # noqa: E402

from orchestrator import verify  # noqa: E402
from orchestrator.errors import VerificationFailed  # noqa: E402


def groups(*counts, judged=True):
    out, start = [], 0
    for i, n in enumerate(counts):
        out.append({"name": f"g{i}", "start": start, "count": n, "judged": judged})
        start += n
    return out


def one_hot(classes, k=8, seed=0):
    rng = np.random.default_rng(seed)
    p = np.zeros((k, 1, classes), np.float32)
    p[np.arange(k), 0, rng.integers(0, classes, k)] = 1.0
    return p


def test_varied_outputs_within_tolerance_pass_on_outputs():
    rng = np.random.default_rng(1)
    ref = rng.uniform(-1, 1, (8, 1, 5))
    got = ref + 1e-6
    v = parity.judge({"y": ref}, {"y": got}, groups(8))
    assert v["passed"] and v["conclusive"] and v["basis"] == "outputs"
    assert v["outputs"][0]["max_abs_err"] == pytest.approx(1e-6, rel=1e-3)


def test_saturated_outputs_are_judged_on_logits_and_a_logit_error_fails():
    probs = one_hot(10)
    logits = np.random.default_rng(2).normal(0, 100, (8, 1, 10)).astype(np.float32)
    good = parity.judge({"p": probs}, {"p": probs}, groups(8), ref_logits={"p": logits},
                        got_logits={"p": logits * (1 + 1e-7)})
    assert good["passed"] and good["basis"] == "logits"
    stats = good["outputs"][0]["by_distribution"]["g0"]
    assert stats["saturated"] == 1.0 and stats["basis"] == "logits"
    bad = parity.judge({"p": probs}, {"p": probs}, groups(8), ref_logits={"p": logits},
                       got_logits={"p": logits * 1.01})  # the same one-hot outputs, 1% off logits
    assert not bad["passed"] and bad["outputs"][0]["by_distribution"]["g0"]["logits"]["passed"] is False


def test_saturated_outputs_without_logits_are_inconclusive_and_fail():
    probs = one_hot(10)
    v = parity.judge({"p": probs}, {"p": probs}, groups(8))
    assert not v["passed"] and not v["conclusive"] and v["reason"].startswith("inconclusive")
    with pytest.raises(VerificationFailed, match="inconclusive.*--sample_input"):
        verify.check(dict(v, inputs={"distributions": []}))


def test_nearly_constant_outputs_are_inconclusive():
    ref = np.full((8, 1, 4), 0.3, np.float32) + np.random.default_rng(3).normal(0, 1e-6, (8, 1, 4)).astype(np.float32)
    v = parity.judge({"y": ref}, {"y": ref}, groups(8))
    assert not v["conclusive"] and "nearly constant" in v["reason"]


def test_a_saturated_output_that_differs_still_fails():
    probs = one_hot(10)
    other = one_hot(10, seed=9)
    v = parity.judge({"p": probs}, {"p": other}, groups(8))
    assert not v["passed"] and v["outputs"][0]["max_abs_err"] == 1.0


def test_noise_floor_raises_the_tolerance_and_override_wins():
    rng = np.random.default_rng(4)
    ref = rng.uniform(-1, 1, (8, 1, 6))
    noisy = ref + 5e-5  # the reference's own arithmetic moves it by 5e-5 of its scale (scale ~1)
    got = ref + 3e-4
    v = parity.judge({"y": ref}, {"y": got}, groups(8), perturbed={"y": noisy})
    o = v["outputs"][0]
    assert v["passed"] and o["noise_floor"] == pytest.approx(5e-5 / np.max(np.abs(ref)), rel=1e-3)
    assert o["tolerance"] == pytest.approx(10 * o["noise_floor"]) and "noise floor" in o["tolerance_source"]
    strict = parity.judge({"y": ref}, {"y": got}, groups(8), perturbed={"y": noisy}, override=1e-4)
    assert not strict["passed"] and strict["outputs"][0]["tolerance_source"] == "given with --tolerance"
    assert parity.tolerance_for("none", 1.0)[0] == 100 * 1e-4  # capped


def test_reported_distributions_do_not_decide():
    rng = np.random.default_rng(5)
    ref = rng.uniform(-1, 1, (16, 1, 3))
    got = ref.copy()
    got[8:] += 0.5  # the second group (reported only) is far off
    gs = groups(8, 8)
    gs[1]["judged"] = False
    v = parity.judge({"y": ref}, {"y": got}, gs, mode="int8")
    assert v["passed"] and v["outputs"][0]["by_distribution"]["g1"]["max_abs_err"] == pytest.approx(0.5)


def test_top1_agreement_for_classifier_outputs():
    ref = np.random.default_rng(6).uniform(0, 1, (8, 1, 5))
    got = ref.copy()
    got[0, 0] = got[0, 0][::-1]
    v = parity.judge({"y": ref}, {"y": got}, groups(8))
    assert v["outputs"][0]["top1_agreement"] <= 7 / 8


def test_make_batches_groups_given_data_first_and_draws_each_distribution(tmp_path):
    spec = verify_io.InputSpec("x", [1, 4, 4, 3], "float32")
    ids = verify_io.InputSpec("ids", [1, 6], "int32", int_range=(0, 50))
    np.savez(tmp_path / "s.npz", x=np.ones((2, 4, 4, 3), np.float32), ids=np.zeros((2, 6), np.int32))
    plan = {"seed": 3, "samples": 4, "given": [{"name": "sample_input", "file": str(tmp_path / "s.npz")}],
            "distributions": [dict(d) for d in verify.DISTRIBUTIONS]}
    batches, gs = verify_io.make_batches([spec, ids], plan)
    assert [(g["name"], g["start"], g["count"]) for g in gs] == [("sample_input", 0, 2), ("uniform", 2, 4),
                                                                   ("normal", 6, 4), ("image", 10, 4)]
    assert batches["x"].shape == (14, 1, 4, 4, 3) and np.all(batches["x"][:2] == 1)
    assert batches["x"][10:].min() >= 0 and batches["x"][2:6].min() < 0
    assert batches["ids"].dtype == np.int32 and batches["ids"][2:].max() < 50
    again, _ = verify_io.make_batches([spec, ids], plan)
    np.testing.assert_array_equal(again["x"], batches["x"])  # seeded


def test_pixels_only_where_an_input_takes_them():
    plan = {"samples": 2, "distributions": [dict(d) for d in verify.DISTRIBUTIONS]}
    _b, gs = verify_io.make_batches([verify_io.InputSpec("x", [1, 3], "float32")], plan)
    assert "pixels" not in [g["name"] for g in gs]
    b, gs = verify_io.make_batches([verify_io.InputSpec("img", [1, 2, 2, 3], "uint8")], plan)
    assert "pixels" in [g["name"] for g in gs] and b["img"].dtype == np.uint8


@pytest.mark.parametrize("shape, count", [((1, 8), 1), ((8,), 1), ((5, 8), 5), ((5, 1, 8), 5)])
def test_given_arrays_one_sample_or_many(tmp_path, shape, count):
    np.save(tmp_path / "a.npy", np.zeros(shape, np.float32))
    batch = verify_io.given_batches([verify_io.InputSpec("x", [1, 8], "float32")], str(tmp_path / "a.npy"), "s")
    assert batch["x"].shape == (count, 1, 8)


def test_channels_last_data_for_a_channels_first_input_is_transposed(tmp_path):
    data = np.arange(2 * 4 * 4 * 3, dtype=np.float32).reshape(2, 4, 4, 3)
    np.save(tmp_path / "a.npy", data)
    batch = verify_io.given_batches([verify_io.InputSpec("x", [1, 3, 4, 4], "float32")], str(tmp_path / "a.npy"),
                                    "s")
    np.testing.assert_array_equal(batch["x"][:, 0], data.transpose(0, 3, 1, 2))


def test_given_arrays_that_do_not_fit_name_the_file(tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((1, 7), np.float32))
    with pytest.raises(verify_io.InputError, match="bad.npy.*does not fit input 'x'"):
        verify_io.given_batches([verify_io.InputSpec("x", [1, 8], "float32")], str(tmp_path / "bad.npy"), "s")


def test_array_files_round_trip(tmp_path):
    arrays = {"f": np.random.default_rng(0).normal(size=(2, 3)).astype(np.float32), "i": np.arange(4, dtype=np.int64),
              "b": np.array([True, False])}
    verify_io.save_arrays(str(tmp_path / "a.json"), arrays)
    back = verify_io.read_json_arrays(str(tmp_path / "a.json"))
    np.testing.assert_array_equal(back["f"], arrays["f"])
    assert back["i"].dtype == np.int32 and list(back["i"]) == [0, 1, 2, 3] and back["b"].dtype == np.bool_


def test_input_plan_judges_only_user_data_in_integer_modes(tmp_path):
    np.save(tmp_path / "c.npy", np.zeros((4, 3), np.float32))
    values = {"calibration": tmp_path / "c.npy", "quantize": "int8", "seed": 2}
    plan = verify.input_plan(values, {"calibration": "/in/opt/calibration/c.npy"})
    assert plan["given"] == [{"name": "calibration", "file": "/in/opt/calibration/c.npy", "judged": True}]
    assert all(not d["judged"] for d in plan["distributions"]) and plan["seed"] == 2 and "tolerance" not in plan
    float_plan = verify.input_plan({"calibration": tmp_path / "c.npy", "tolerance": 1e-3},
                                   {"calibration": "/in/opt/calibration/c.npy"})
    assert all(d["judged"] for d in float_plan["distributions"]) and float_plan["tolerance"] == 1e-3
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"png")
    assert verify.input_plan({"calibration": tmp_path / "images"}, {"calibration": "/in/x"})["given"] == []


def test_zero_tolerance_names_the_worst_distribution():
    ref = np.random.default_rng(7).uniform(-1, 1, (16, 1, 3))
    got = ref.copy()
    got[8:] += 1e-3
    v = parity.judge({"y": ref}, {"y": got}, groups(8, 8), override=0.0)
    assert not v["passed"] and v["outputs"][0]["worst_distribution"] == "g1"
