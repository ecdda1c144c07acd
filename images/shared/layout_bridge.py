"""The layout bridge between a channels-first reference (torch, onnxruntime: NCHW) and a converted model that went
channels-last (onnx2tf's NHWC graphs, litert-torch with to_channel_last_io): inputs are transposed to the converted
model's shapes, outputs transposed back to the reference's (when both fit a shape, the closer one), and both are
recorded. Used by the TFLite and SavedModel runners of the onnx2tf and litert_torch stacks."""

import os

import numpy as np

from common import load_array_file, reject
from tflite_runtime import TFLiteModel


def to_last(rank):
    """NCHW -> NHWC permutation for a tensor of this rank (channels from axis 1 to the end)."""
    return (0,) + tuple(range(2, rank)) + (1,)


def to_first(rank):
    """NHWC -> NCHW."""
    return (0, rank - 1) + tuple(range(1, rank - 1))


class ConvertedTFLite(TFLiteModel):
    """A converted .tflite (onnx2tf, litert-torch) fed the reference's NCHW inputs (transposed to its NHWC shapes),
    its outputs and logits read back into the reference's layout and names."""

    def adapt_inputs(self, batches):
        return adapt_inputs(self.inputs, batches)

    def adapt_outputs(self, outputs, logits, ref_outputs, ref_logits):
        got, layout = adapt_outputs(outputs, ref_outputs)
        names = match(list(outputs), list(ref_outputs)) or {}
        renamed = {ref: logits[got_name] for ref, got_name in names.items() if got_name in logits}
        # the logits' ops are recorded under the reference's names too
        self.logit_ops = {ref: self.logit_ops[got_name] for ref, got_name in names.items()
                          if got_name in self.logit_ops}
        got_logits, _ = adapt_outputs(renamed, {k: v for k, v in ref_logits.items() if k in renamed}, rename=False)
        return got, got_logits, layout


def _key(name):
    """Names onnx2tf gives converted tensors ('serving_default_input_0:0', 'input_0') compared plainly."""
    name = name.split(":")[0]
    for prefix in ("serving_default_",):
        if name.startswith(prefix):
            name = name[len(prefix):]
    return name.replace("/", "_").replace(".", "_")


def match(names, wanted):
    """Map each wanted name to one of `names`: by (normalized) name when all match, else by order."""
    by_key = {_key(n): n for n in names}
    if all(_key(w) in by_key for w in wanted):
        return {w: by_key[_key(w)] for w in wanted}
    if len(names) == len(wanted):
        return dict(zip(wanted, names))
    return None


def _batched(perm):
    """A per-sample permutation applied to a batch [K, ...]."""
    return (0,) + tuple(p + 1 for p in perm)


def adapt_inputs(specs, given):
    """Batches for a converted model from reference batches {name: [K, ...]} (ONNX layout): same shape, or the
    NCHW -> NHWC transposition of it. Returns (batches, layout record)."""
    pairs = match([s.name for s in specs], list(given))
    if pairs is None:
        reject(f"the converted model has {len(specs)} input(s), the reference {len(given)}")
    by_name = {s.name: s for s in specs}
    feeds, layout = {}, {}
    for ref_name, arr in given.items():
        spec, rank = by_name[pairs[ref_name]], arr.ndim - 1
        if spec.fits(arr.shape[1:]):
            feeds[spec.name], layout[ref_name] = arr, "same"
        elif rank >= 3 and spec.fits(arr.transpose(_batched(to_last(rank))).shape[1:]):
            feeds[spec.name] = np.ascontiguousarray(arr.transpose(_batched(to_last(rank))))
            layout[ref_name] = "NCHW->NHWC" if rank == 4 else f"transposed {list(to_last(rank))}"
        else:
            reject(f"reference input '{ref_name}' {list(arr.shape[1:])} fits neither the converted input "
                   f"'{spec.name}' {spec.shape} nor its NHWC transposition")
        feeds[spec.name] = feeds[spec.name].astype(spec.dtype)
    return feeds, layout


def adapt_outputs(got, reference, rename=True):
    """Converted output batches {name: [K, ...]} renamed and transposed back to the reference's. When both the
    plain and the transposed layout fit a shape, the one closer to the reference (over all samples) wins."""
    pairs = match(list(got), list(reference)) if rename else {n: n for n in reference if n in got}
    if pairs is None:  # let the compare step report the count mismatch
        return got, {}
    result, layout = {}, {}
    for ref_name, ref in reference.items():
        if ref_name not in pairs:
            continue
        g = np.asarray(got[pairs[ref_name]])
        rank = g.ndim - 1
        candidates = []
        if g.shape == ref.shape:
            candidates.append(("same", g))
        if rank >= 3:
            back = g.transpose(_batched(to_first(rank)))
            if back.shape == ref.shape:
                candidates.append(("NHWC->NCHW" if rank == 4 else f"transposed {list(to_first(rank))}", back))
        if not candidates:
            result[ref_name], layout[ref_name] = g, "shape differs"
            continue
        best = min(candidates, key=lambda c: float(np.max(np.abs(c[1].astype(np.float64) - ref))) if ref.size else 0)
        layout[ref_name], result[ref_name] = best[0], np.ascontiguousarray(best[1])
    return result, layout


def tflite_run_info(model, inputs_path):
    """What a TFLite result runner records beside its outputs: the output quantization scales, named as the
    reference's outputs (the compare step pairs them), and the TRANSPOSE operators left in the model."""
    info = {}
    scales = model.quant_scales()
    ref_out = os.path.join(os.path.dirname(inputs_path or ""), "outputs.npz")
    if scales and os.path.exists(ref_out):
        names = match(list(scales), list(load_array_file(ref_out))) or {}
        info["tensors"] = {"quant_scales": {ref: scales[got] for ref, got in names.items()}}
    info["transpose_ops"] = model.op_counts().get("TRANSPOSE", 0)
    return info
