# -*- coding: utf-8 -*-
"""Verification inputs and array files, shared by every Python stack (Python 2.7 in tf1 included: keep this file
free of f-strings and of numpy features newer than 1.16).

The host sends each reference runner an input plan (JSON, see orchestrator/verify.py):
    {"seed": 0, "samples": 8,
     "distributions": [{"name": "uniform", "kind": "uniform", "low": -1, "high": 1, "judged": true}, ...,
                       {"name": "pixels", "kind": "uniform", "low": 0, "high": 255, "when": "pixels", ...}],
     "given": [{"name": "sample_input", "file": "/in/opt/x.npy", "judged": true}, ...]}
and the runner turns it into one batch per input: {input name: array [K, *input shape]} plus the groups
[{"name", "kind", "start", "count", "judged", ...}] saying which samples came from which distribution.

Array files exchanged between stacks are JSON ({name: {"shape", "dtype", "b64"}}, raw little-endian bytes in
base64), which the TF.js runtime reads as easily as numpy does.
"""
from __future__ import division, print_function

import base64
import glob
import json
import os

import numpy as np

DEFAULT_INT_RANGE = (0, 10)  # integer inputs whose model says nothing of their range
DTYPE_RANGES = {"uint8": (0, 256), "int8": (-128, 128), "bool": (0, 2)}
MAX_GIVEN = 32  # samples taken from a user's file per distribution


class InputError(Exception):
    """The user's data does not fit the model (the runner rejects it with this message)."""


# -- array files ------------------------------------------------------------------------------
def save_arrays(path, arrays):
    """{name: array} -> JSON with base64 data (readable by every stack, the TF.js runtime included)."""
    doc = {}
    for name, value in arrays.items():
        a = np.ascontiguousarray(value)
        if a.dtype == np.bool_:
            a = a.astype(np.uint8)
            dtype = "bool"
        elif a.dtype.kind == "f":
            a, dtype = a.astype("<f4"), "float32"
        elif a.dtype.kind in "iu" and a.dtype not in (np.uint8, np.int8):
            a, dtype = a.astype("<i4"), "int32"
        else:
            dtype = a.dtype.name
        doc[name] = {"shape": list(a.shape), "dtype": dtype,
                     "b64": base64.b64encode(a.tobytes()).decode("ascii")}
    with open(path, "w") as fh:
        json.dump(doc, fh)


def read_json_arrays(path):
    with open(path) as fh:
        doc = json.load(fh)
    out = {}
    for name, v in doc.items():
        dtype = v.get("dtype", "float32")
        if "b64" in v:
            raw = np.frombuffer(base64.b64decode(v["b64"]), dtype="u1" if dtype == "bool" else
                                ("<f4" if dtype == "float32" else "<i4" if dtype == "int32" else dtype))
            a = raw.reshape(v["shape"])
        else:
            a = np.asarray(v["data"], dtype="u1" if dtype == "bool" else dtype).reshape(v["shape"])
        out[name] = a.astype(np.bool_) if dtype == "bool" else a
    return out


def load_arrays(path):
    """A .npy -> [array]; a .npz or .json -> {name: array}; a folder of .npy files -> [array] (file order)."""
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, "*.npy")))
        if not files:
            raise InputError("%s: holds no .npy files" % path)
        return [np.stack([np.load(f, allow_pickle=False) for f in files])]
    try:
        if path.endswith(".json"):
            return read_json_arrays(path)
        if path.endswith(".npz"):
            with np.load(path, allow_pickle=False) as data:
                return dict((k, data[k]) for k in data.files)
        return [np.load(path, allow_pickle=False)]
    except Exception as exc:  # numpy raises several types for bad files
        raise InputError("%s: not a readable numpy file (%s: %s)" % (path, type(exc).__name__,
                                                                    str(exc).strip().split("\n")[0]))


# -- specs --------------------------------------------------------------------------------------
class InputSpec(object):
    """One model input as verification sees it: a concrete shape (dynamic sizes already chosen by the runner),
    a dtype, the valid range of an integer input, and whether it takes pixel values."""

    def __init__(self, name, shape, dtype, int_range=None, pixels=None):
        self.name = name
        self.shape = [int(d) for d in shape]
        self.dtype = np.dtype(dtype)
        self.int_range = tuple(int_range) if int_range else DTYPE_RANGES.get(self.dtype.name, DEFAULT_INT_RANGE)
        self.pixels = (self.dtype == np.uint8) if pixels is None else bool(pixels)

    def to_json(self):
        return {"name": self.name, "shape": self.shape, "dtype": self.dtype.name,
                "int_range": list(self.int_range), "pixels": self.pixels}


def sample_fits(spec, shape):
    """How a given array relates to the spec: 'batch' (samples on axis 0, then the input's own shape), 'one'
    (a single sample, with or without the batch axis), or None."""
    want = list(spec.shape)
    shape = list(shape)
    if len(shape) == len(want) + 1 and shape[1:] == want:
        return "batch"
    if shape == want:
        return "one"
    if len(shape) == len(want) and want and want[0] == 1 and shape[1:] == want[1:]:
        return "stacked"  # [K, ...] where the input has a batch dimension of 1
    if len(shape) == len(want) - 1 and want and want[0] == 1 and shape == want[1:]:
        return "one_unbatched"
    return None


def _channels_last(shape):
    return [shape[0]] + shape[2:] + [shape[1]] if len(shape) >= 3 else shape


def _as_samples(spec, arr, source):
    """[K, *spec.shape] from a user's array (one sample or many; channels-last data for a channels-first input
    is transposed)."""
    for candidate, transposed in ((arr, False), (None, True)):
        if transposed:
            if arr.ndim < 3 or len(spec.shape) < 3:
                break
            # data stored channels-last (NHWC) for an NCHW input: move the last axis to axis 1 of each sample
            nhwc = _channels_last(spec.shape)
            probe = InputSpec(spec.name, nhwc, spec.dtype)
            how = sample_fits(probe, arr.shape)
            if how is None:
                break
            candidate = _samples_by(how, arr)
            rank = candidate.ndim
            candidate = candidate.transpose((0, 1, rank - 1) + tuple(range(2, rank - 1)))
            return candidate[:MAX_GIVEN]
        how = sample_fits(spec, candidate.shape)
        if how is not None:
            return _samples_by(how, candidate)[:MAX_GIVEN]
    raise InputError("%s: array of shape %s does not fit input '%s' of shape %s" % (
        source, list(arr.shape), spec.name, spec.shape))


def _samples_by(how, arr):
    if how == "batch":
        return arr
    if how == "one":
        return arr[None]
    if how == "stacked":
        return arr[:, None]
    return arr[None, None]  # one_unbatched


def given_batches(specs, path, source_name):
    """{input name: [K, *shape]} from a user's file (.npy for one input, .npz by name or order, a folder of .npy)."""
    data = load_arrays(path)
    if isinstance(data, dict):
        if all(s.name in data for s in specs):
            arrays = [data[s.name] for s in specs]
        else:
            arrays = list(data.values())
    else:
        arrays = list(data)
    if len(arrays) != len(specs):
        raise InputError("%s: holds %d array(s) but the model has %d input(s) (%s)" % (
            path, len(arrays), len(specs), ", ".join(s.name for s in specs)))
    batches = dict((s.name, _as_samples(s, np.asarray(a), path)) for s, a in zip(specs, arrays))
    counts = set(len(b) for b in batches.values())
    if len(counts) != 1:
        raise InputError("%s: the inputs hold different numbers of samples (%s)" % (path, sorted(counts)))
    return dict((s.name, batches[s.name].astype(s.dtype)) for s in specs)


# -- random distributions ------------------------------------------------------------------------
def _draw(spec, dist, rng, count):
    shape = [count] + spec.shape
    if spec.dtype == np.bool_:
        return rng.randint(0, 2, shape).astype(np.bool_)
    if spec.dtype.kind in "iu":
        low, high = spec.int_range
        return rng.randint(low, high, shape).astype(spec.dtype)
    kind = dist["kind"]
    if dist.get("when") == "pixels" and not spec.pixels:
        kind, low, high = "uniform", -1.0, 1.0  # a pixel batch for the model: its other inputs stay ordinary
    else:
        low, high = dist.get("low", -1.0), dist.get("high", 1.0)
    if kind == "normal":
        values = rng.normal(dist.get("mean", 0.0), dist.get("std", 1.0), shape)
    else:
        values = rng.uniform(low, high, shape)
    return values.astype(spec.dtype)


def applies(dist, specs):
    return dist.get("when") != "pixels" or any(s.pixels for s in specs)


def make_batches(specs, plan, grid=None):
    """(batches {name: [K, *shape]}, groups) for the plan. `grid` maps float values onto what the model's
    input can represent (e.g. SSD's uint8 grid); it is applied to random and given data alike."""
    seed = int(plan.get("seed", 0))
    count = int(plan.get("samples", 8))
    parts, groups, start = [], [], 0
    for entry in plan.get("given", []):
        batch = given_batches(specs, entry["file"], entry["name"])
        n = len(next(iter(batch.values())))
        parts.append(batch)
        groups.append({"name": entry["name"], "kind": "given", "file": os.path.basename(entry["file"]),
                       "start": start, "count": n, "judged": bool(entry.get("judged", True))})
        start += n
    for i, dist in enumerate(plan.get("distributions", [])):
        if not applies(dist, specs):
            continue
        rng = np.random.RandomState([seed, i])
        parts.append(dict((s.name, _draw(s, dist, rng, count)) for s in specs))
        group = dict((k, v) for k, v in dist.items() if k not in ("judged",))
        group.update(start=start, count=count, judged=bool(dist.get("judged", True)))
        groups.append(group)
        start += count
    batches = dict((s.name, np.concatenate([p[s.name] for p in parts]) if parts else
                    np.zeros([0] + s.shape, s.dtype)) for s in specs)
    if grid is not None:
        batches = dict((k, grid(v)) for k, v in batches.items())
    return batches, groups


def ulp_perturbed(batches, seed=0):
    """The same inputs moved by about one float32 rounding step each (random sign): what a runtime with no
    other way to perturb its arithmetic uses to measure how much float32 noise the model amplifies."""
    rng = np.random.RandomState([seed, 9973])
    out = {}
    for name, a in batches.items():
        if a.dtype.kind == "f":
            step = np.spacing(np.abs(a).astype(np.float32)).astype(np.float64)
            out[name] = (a.astype(np.float64) + rng.choice([-1.0, 1.0], a.shape) * step).astype(a.dtype)
        else:
            out[name] = a
    return out


def read_plan(text):
    """The plan from --plan (JSON text or a file path)."""
    if text is None:
        return {"seed": 0, "samples": 1, "distributions": [{"name": "uniform", "kind": "uniform",
                                                            "low": -1.0, "high": 1.0}]}
    if os.path.isfile(text):
        with open(text) as fh:
            return json.load(fh)
    return json.loads(text)
