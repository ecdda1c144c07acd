"""A user's JAX/Flax model inside the TF2 stack: FILE.py:build, where build() (or build(params)) returns
(apply_fn, params); input signatures "SHAPE:DTYPE" with symbolic dimensions for shape polymorphism.
The user's file runs only here, in the no-network container with its folder mounted read-only."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from common import first_line, import_user_file, reject  # noqa: E402

DTYPES = ("float32", "float16", "bfloat16", "int32", "int64", "int8", "uint8", "bool")
SYMBOLIC_SIZE = 2  # a symbolic dimension's size in the verification inputs (not 1: that would hide a broadcast)


class Signature:
    def __init__(self, text, index):
        shape, sep, dtype = text.strip().rpartition(":")
        if not sep:
            shape, dtype = text.strip(), "float32"
        if dtype not in DTYPES:
            reject(f"--input_signature '{text}': unknown dtype '{dtype}' (one of {', '.join(DTYPES)})")
        dims = [d.strip() for d in shape.split(",") if d.strip()] if shape.strip() else []
        self.text, self.dtype, self.name = text.strip(), dtype, f"input_{index}"
        self.dims = []
        for d in dims:
            if d.isdigit():
                self.dims.append(int(d))
            elif d.isidentifier():
                self.dims.append(d)
            else:
                reject(f"--input_signature '{text}': dimension '{d}' is neither a size nor a name")

    @property
    def tf_shape(self):
        return [d if isinstance(d, int) else None for d in self.dims]

    @property
    def concrete(self):
        return [d if isinstance(d, int) else SYMBOLIC_SIZE for d in self.dims]

    @property
    def polymorphic(self):
        return any(not isinstance(d, int) for d in self.dims)


def signatures(text):
    if not text:
        reject("the JAX route needs --input_signature SHAPE:DTYPE (once per input)")
    return [Signature(part, i) for i, part in enumerate(text.split(";")) if part.strip()]


def polymorphic_shapes(text, sigs):
    if not text:
        if any(s.polymorphic for s in sigs):
            # jax2tf needs the symbolic shape spelled out: derive it from the signature
            return [f"({', '.join(str(d) for d in s.dims)}{',' if len(s.dims) == 1 else ''})" for s in sigs]
        return None
    shapes = [p.strip() for p in text.split(";") if p.strip()]
    if len(shapes) != len(sigs):
        reject(f"--polymorphic_shapes gives {len(shapes)} shape(s) for {len(sigs)} input signature(s)")
    return shapes


def load_build(spec):
    path, _, attr = spec.rpartition(":")
    module = import_user_file(path)
    build = getattr(module, attr, None)
    if build is None:
        found = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        reject(f"{path}: defines no '{attr}' (callables: {', '.join(found[:8]) or 'none'})")
    if not callable(build):
        reject(f"{path}: '{attr}' is not a function")
    return path, attr, build


def load_params(path):
    from flax import serialization

    try:
        with open(path, "rb") as fh:
            return serialization.msgpack_restore(fh.read())
    except Exception as exc:
        reject(f"{path}: not a Flax msgpack params file ({first_line(exc)})")


def build_model(spec, params_file=None):
    """(apply_fn, params, description) from the user's build()."""
    path, attr, build = load_build(spec)
    try:
        result = build(load_params(params_file)) if params_file else build()
    except Exception as exc:
        reject(f"{os.path.basename(path)}: {attr}() raised {first_line(exc)}")
    if not (isinstance(result, (tuple, list)) and len(result) == 2 and callable(result[0])):
        reject(f"{os.path.basename(path)}: {attr}() must return (apply_fn, params), got {type(result).__name__}")
    return result[0], result[1], f"{os.path.basename(path)}:{attr}"


def check_signatures(apply_fn, params, sigs, where):
    """Trace apply_fn on the signatures (no computation): a mismatch is the user's input error."""
    import jax
    import jax.numpy as jnp

    structs = [jax.ShapeDtypeStruct(s.concrete, jnp.dtype(s.dtype)) for s in sigs]
    try:
        out = jax.eval_shape(apply_fn, params, *structs)
    except Exception as exc:
        shown = " ".join(f"'{s.text}'" for s in sigs)
        reject(f"--input_signature {shown} does not fit {where} ({first_line(exc)})")
    return jax.tree_util.tree_leaves(out)


def flat_outputs(result):
    import jax
    import numpy as np

    return [np.asarray(v) for v in jax.tree_util.tree_leaves(result)]
