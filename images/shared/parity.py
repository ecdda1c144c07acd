"""One criterion for "the converted model computes what the source computes", used by the shared verification
(tf2's compare.py) and by conversion steps that check their own attempts (onnx2tf's remedy loop).

Inputs come in groups (distributions: uniform [-1, 1], normal(0, 1), image-like [0, 1], pixels, the user's
calibration or sample data), each a batch of samples. Per output and group it measures the max absolute and
relative error (relative to the reference's scale, its largest magnitude in the group), top-1 agreement for
classifier-like outputs and the spread of the reference across samples.

An output is trusted only where it says something: a group whose reference output is saturated (a one-hot softmax,
an all-0/all-1 sigmoid) or nearly constant across samples is inconclusive, and the tensors that feed the final
softmax/sigmoid/argmax (the logits) are compared there instead. Nothing conclusive anywhere fails the check.

The tolerance is grounded in the source's own float32 noise: the reference runs a second time with its arithmetic
perturbed (float64, other graph optimizations, or inputs moved by one rounding step), the largest difference
relative to the scale is the noise floor, and the tolerance is the larger of the mode's default and NOISE_FACTOR
times the floor (capped at NOISE_CAP times the default). An explicit tolerance overrides all of it.
"""

import numpy as np

# max |error| relative to the output's scale, by quantization mode
TOLERANCES = {"none": 1e-4, "float16": 1e-2, "dynamic": 5e-2, "int8": 1.5e-1, "int8-full": 1.5e-1, "uint8": 1.5e-1,
              # TF.js weight quantization (--quantize_float16/uint16/uint8): activations stay float32
              "weights_float16": 1e-2, "weights_uint16": 1e-3, "weights_uint8": 1e-1}
# where the converted model reports its outputs' quantization step: max |error| in steps. TOCO fuses and rounds
# differently from TF's fake-quant graph: on a random-weight quantization-aware SSD, over 24 inputs of three
# distributions, up to 10 steps (mean 0.4 to 0.6 steps).
STEP_TOLERANCES = {"uint8": 12.0, "int8": 8.0, "int8-full": 8.0}
NOISE_FACTOR = 10.0  # tolerance >= this many times the reference's own float32 noise floor
NOISE_CAP = 100.0  # ... but never more than this many times the mode's default
SATURATED = 1e-3  # a probability-like sample whose every value lies this close to 0 or 1 carries no detail
NEAR_CONSTANT = 1e-3  # spread across samples (relative to the scale) below which an output says nothing


def default_tolerance(mode):
    return TOLERANCES.get(mode, TOLERANCES["none"])


def tolerance_for(mode, floor, override=None):
    """(tolerance, how it was derived)."""
    if override is not None:
        return float(override), "given with --tolerance"
    base = default_tolerance(mode)
    if floor is None or not np.isfinite(floor):
        return base, f"mode {mode} default"
    noisy = NOISE_FACTOR * floor
    if noisy <= base:
        return base, f"mode {mode} default ({NOISE_FACTOR:g} x noise floor {floor:.2g} is below it)"
    capped = min(noisy, NOISE_CAP * base)
    cap_note = f", capped at {NOISE_CAP:g} x the default" if capped < noisy else ""
    return capped, f"{NOISE_FACTOR:g} x noise floor {floor:.2g} (above the mode {mode} default {base:g}{cap_note})"


def pair(ref, got):
    """[(ref_name, got_name)] and the method used: by name, by order, or by unique shape."""
    if set(ref) == set(got):
        return [(n, n) for n in ref], "name"
    if len(ref) != len(got):
        return None, f"count mismatch: {len(ref)} reference output(s), {len(got)} converted"
    by_order = list(zip(ref, got))
    if all(ref[a].shape == got[b].shape for a, b in by_order):
        return by_order, "order"
    shapes = {}
    for name, arr in got.items():
        shapes.setdefault(arr.shape, []).append(name)
    if all(len(v) == 1 for v in shapes.values()) and all(ref[n].shape in shapes for n in ref):
        return [(n, shapes[ref[n].shape][0]) for n in ref], "shape"
    return by_order, "order"


def _per_sample(a):
    return a.reshape(len(a), -1).astype(np.float64)


def saturated_samples(ref):
    """Boolean per sample: a probability-like output with every value within SATURATED of 0 or 1."""
    flat = _per_sample(ref)
    if flat.shape[1] == 0:
        return np.zeros(len(flat), bool)
    in_unit = np.all((flat >= -1e-6) & (flat <= 1 + 1e-6), axis=1)
    hard = np.all(np.minimum(np.abs(flat), np.abs(1 - flat)) <= SATURATED, axis=1)
    return in_unit & hard


def classifier_like(shape):
    """A vector of class scores per sample (leading size-1 axes aside)."""
    dims = [d for d in shape if d != 1]
    return len(dims) == 1 and dims[0] >= 2


def _stats(r, g, floor_ref=None):
    """Errors of one group: r, g [K, ...] float64."""
    scale = float(np.max(np.abs(r))) if r.size else 0.0
    err = np.abs(r - g)
    max_abs = float(np.max(err)) if r.size else 0.0
    rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    out = {"max_abs_err": max_abs, "max_rel_err": rel, "mean_abs_err": float(np.mean(err)) if r.size else 0.0,
           "scale": scale}
    if len(r) > 1 and scale > 0:
        out["spread"] = float(np.mean(np.std(r, axis=0))) / scale
    if floor_ref is not None and r.size:
        diff = float(np.max(np.abs(r - floor_ref)))
        out["noise_floor"] = diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))
    return out


def _top1(r, g):
    return float(np.mean(np.argmax(_per_sample(r), axis=1) == np.argmax(_per_sample(g), axis=1)))


def _conclusive(r, informative):
    """Whether samples `informative` of r say anything: at least two that vary, or the one sample given."""
    rows = r[informative]
    if len(rows) == 0:
        return False, "saturated"
    scale = float(np.max(np.abs(rows)))
    if scale == 0:
        return False, "all zero"
    if len(r) == 1:
        return True, ""
    if len(rows) < 2:
        return False, "saturated"
    spread = float(np.mean(np.std(rows, axis=0))) / scale
    if spread < NEAR_CONSTANT:
        return False, f"nearly constant across inputs (spread {spread:.2g} of its scale)"
    return True, ""


def _group_rows(group):
    return slice(group["start"], group["start"] + group["count"])


HISTOGRAM_EDGES = [0.0] + [10.0 ** e for e in range(-9, 2)] + [float("inf")]


def error_histogram(err):
    """{"bins": [...], "counts": [...]}: how many output values differ from the reference by each decade of |error|
    (the first bin holds the exact matches)."""
    flat = err.ravel()
    counts = [int(np.count_nonzero(flat == 0.0))]
    for lo, hi in zip(HISTOGRAM_EDGES[:-1], HISTOGRAM_EDGES[1:]):
        counts.append(int(np.count_nonzero((flat > lo) & (flat <= hi))))
    return {"counts": counts, "bins": ["0"] + ["(%g, %s]" % (lo, "inf" if not np.isfinite(hi) else "%g" % hi)
                             for lo, hi in zip(HISTOGRAM_EDGES[:-1], HISTOGRAM_EDGES[1:])]}


def compare_output(name, got_name, ref, got, groups, mode, override=None, perturbed=None, steps=None,
                   ref_logits=None, got_logits=None, perturbed_logits=None):
    """The verdict for one output over every group. ref/got/perturbed: [K, ...] arrays of all samples."""
    entry = {"name": name, "result_name": got_name, "shape": list(ref.shape[1:]), "result_shape": list(got.shape[1:])}
    if ref.shape != got.shape:
        return dict(entry, passed=False, conclusive=False, basis="none", reason="shape mismatch")
    r, g = ref.astype(np.float64), got.astype(np.float64)
    if not np.all(np.isfinite(g)):
        return dict(entry, passed=False, conclusive=False, basis="none",
                    reason="non-finite values in the converted output")
    entry["error_histogram"] = error_histogram(np.abs(r - g))
    p = None if perturbed is None or perturbed.shape != ref.shape else perturbed.astype(np.float64)
    have_logits = (ref_logits is not None and got_logits is not None and ref_logits.shape == got_logits.shape)
    if ref_logits is not None and got_logits is not None and not have_logits:
        entry["logits_note"] = f"logits shapes differ: {list(ref_logits.shape[1:])} vs {list(got_logits.shape[1:])}"
    lr = ref_logits.astype(np.float64) if have_logits else None
    lg = got_logits.astype(np.float64) if have_logits else None
    lp = (perturbed_logits.astype(np.float64) if have_logits and perturbed_logits is not None
          and perturbed_logits.shape == ref_logits.shape else None)

    by_group, floors, logit_floors = {}, [], []
    for group in groups:
        rows = _group_rows(group)
        rg, gg = r[rows], g[rows]
        stats = _stats(rg, gg, None if p is None else p[rows])
        if classifier_like(ref.shape[1:]):
            stats["top1_agreement"] = _top1(rg, gg)
        sat = saturated_samples(rg)
        stats["saturated"] = float(np.mean(sat)) if len(sat) else 0.0
        ok, why = _conclusive(rg, ~sat)
        stats["basis"] = "outputs" if ok else "none"
        if not ok:
            stats["inconclusive"] = why
        if have_logits:
            lstats = _stats(lr[rows], lg[rows], None if lp is None else lp[rows])
            lok, lwhy = _conclusive(lr[rows], np.ones(len(lr[rows]), bool))
            stats["logits"] = lstats
            if not ok and lok:
                stats["basis"] = "logits"
            elif not ok and not lok:
                stats["inconclusive"] += f"; logits {lwhy}"
            if group["judged"] and "noise_floor" in lstats:
                logit_floors.append(lstats["noise_floor"])
        if group["judged"] and "noise_floor" in stats and stats["basis"] == "outputs":
            floors.append(stats["noise_floor"])
        by_group[group["name"]] = stats

    floor = max(floors) if floors else (0.0 if p is not None else None)
    tol, how = tolerance_for(mode, floor, override)
    in_steps = steps is not None and mode in STEP_TOLERANCES and override is None
    if in_steps:
        tol, how = STEP_TOLERANCES[mode], f"{STEP_TOLERANCES[mode]:g} quantization steps of the converted output"
    elif steps is not None and mode in STEP_TOLERANCES:
        in_steps = True  # --tolerance given in steps
    logit_floor = max(logit_floors) if logit_floors else (0.0 if lp is not None else None)
    logit_tol, logit_how = tolerance_for(mode, logit_floor, override)
    entry.update(tolerance=tol, tolerance_source=how, noise_floor=floor)
    if have_logits:
        entry["logits_tolerance"] = logit_tol
        entry["logits_tolerance_source"] = logit_how

    judged = [gr for gr in groups if gr["judged"]]
    failures, bases = [], set()
    for group in judged:
        stats = by_group[group["name"]]
        if in_steps:
            stats["max_err_steps"] = stats["max_abs_err"] / steps
            stats["passed"] = bool(stats["max_err_steps"] <= tol)
        else:
            stats["passed"] = bool(stats["max_rel_err"] <= tol)
        if stats["basis"] == "logits":
            stats["logits"]["passed"] = bool(stats["logits"]["max_rel_err"] <= logit_tol)
            stats["passed"] = stats["passed"] and stats["logits"]["passed"]
        if stats["basis"] != "none":
            bases.add(stats["basis"])
        if not stats["passed"]:
            failures.append(group["name"])
    worst_group = max(judged, key=lambda gr: _badness(by_group[gr["name"]], in_steps, steps, tol, logit_tol),
                      default=None)
    if judged:  # over every judged sample: the largest errors, the mean error; the scale of the worst group
        stats = [by_group[gr["name"]] for gr in judged]
        weights = [gr["count"] for gr in judged]
        entry.update(max_abs_err=max(st["max_abs_err"] for st in stats),
                     max_rel_err=max(st["max_rel_err"] for st in stats),
                     mean_abs_err=float(np.average([st["mean_abs_err"] for st in stats], weights=weights)),
                     scale=by_group[worst_group["name"]]["scale"])
    if in_steps and judged:
        entry.update(quant_step=steps, max_err_steps=entry["max_abs_err"] / steps)
    if worst_group:
        entry["worst_distribution"] = worst_group["name"]
    tops = [by_group[gr["name"]]["top1_agreement"] for gr in judged if "top1_agreement" in by_group[gr["name"]]]
    if tops:
        entry["top1_agreement"] = min(tops)
    entry["by_distribution"] = by_group
    entry["conclusive"] = bool(bases)
    entry["basis"] = "+".join(sorted(bases)) if bases else "none"
    entry["passed"] = not failures and bool(judged)
    if failures:
        entry["failed_distributions"] = failures
    return entry


def _ratio(err, tol):
    """err / tol, with a zero tolerance (--tolerance 0) meaning any error is infinitely bad."""
    if tol > 0:
        return err / tol
    return 0.0 if err == 0 else float("inf")


def _badness(stats, in_steps, steps, tol, logit_tol):
    own = _ratio(stats["max_abs_err"] / steps, tol) if in_steps else _ratio(stats["max_rel_err"], tol)
    if stats.get("basis") == "logits":
        own = max(own, _ratio(stats["logits"]["max_rel_err"], logit_tol))
    return own


def judge(ref, got, groups, mode="none", override=None, perturbed=None, steps=None, ref_logits=None,
          got_logits=None, perturbed_logits=None):
    """The whole verdict: {mode, pairing, outputs: [...], passed, conclusive, basis, reason?}."""
    perturbed, steps = perturbed or {}, steps or {}
    ref_logits, got_logits, perturbed_logits = ref_logits or {}, got_logits or {}, perturbed_logits or {}
    pairs, method = pair(ref, got)
    result = {"mode": mode, "pairing": method,
              "metric": "max|ref-got| / max|ref| per output and distribution (max over the judged ones)"}
    if pairs is None:
        return dict(result, passed=False, conclusive=False, basis="none", outputs=[], reason=method)
    outs = [compare_output(a, b, ref[a], got[b], groups, mode, override, perturbed.get(a), steps.get(b),
                           ref_logits.get(a), got_logits.get(b), perturbed_logits.get(a)) for a, b in pairs]
    conclusive = [o for o in outs if o["conclusive"]]
    bases = sorted({b for o in conclusive for b in o["basis"].split("+")})
    result.update(outputs=outs, conclusive=bool(conclusive), basis="+".join(bases) if bases else "none",
                  passed=bool(conclusive) and all(o["passed"] for o in outs))
    if any("max_err_steps" in o for o in outs):
        result["metric"] = "max|ref-got| in quantization steps of the converted output, per output and distribution"
    tols = [o["tolerance"] for o in outs if "tolerance" in o]
    if tols:
        result["tolerance"] = max(tols)
    if not conclusive and all(o["passed"] for o in outs):
        reasons = sorted({s.get("inconclusive", "") for o in outs for s in o.get("by_distribution", {}).values()
                          if s.get("inconclusive")})
        result["reason"] = ("inconclusive: the reference outputs say nothing on these inputs ("
                            + "; ".join(reasons) + ") and no logits could be compared")
    return result
