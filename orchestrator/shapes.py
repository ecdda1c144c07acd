"""Limits on what a model's inputs may declare, checked on the host wherever a format or an option states them: a
dimension of 0 or below (other than the format's mark of an unknown size), one past TFLite's int32 dimensions, an
input too large to verify, more inputs than any model has."""

MAX_DIM = 2 ** 31 - 1  # TFLite (and TF.js) store dimensions as int32
MAX_ELEMENTS = 2 ** 28  # per sample: 1 GiB of float32; verification holds dozens of samples of every input
MAX_TENSORS = 4096  # inputs or outputs of one model


def problem(dims, unknown=(None, -1)):
    """Why `dims` cannot be an input's shape, or None. `unknown`: the values that mark a dimension of unknown size
    in this format (they are fine)."""
    if dims is None:
        return None
    known = 1
    for d in dims:
        if d in unknown or isinstance(d, str):
            continue
        if not isinstance(d, int) or isinstance(d, bool):
            return f"has a dimension {d!r} that is not a whole number"
        if d < 1:
            return f"has a dimension of {d} (a size must be at least 1)"
        if d > MAX_DIM:
            return f"has a dimension of {d}, past the {MAX_DIM} that TFLite's int32 shapes hold"
        known *= d
    if known > MAX_ELEMENTS:
        return f"holds {known} elements per sample (at most {MAX_ELEMENTS} can be converted and verified here)"
    return None


def describe(dims):
    return "[" + ", ".join("None" if d is None else str(d) for d in dims) + "]"


def too_many(count, kind="inputs"):
    """Why a model with `count` inputs (or outputs) is refused, or None."""
    if count > MAX_TENSORS:
        return f"declares {count} {kind}; at most {MAX_TENSORS} are supported"
    return None
