"""Write a small Flax model as the JAX route reads it: module.py with build(params=None) -> (apply_fn, params),
and params.msgpack (the same random parameters, Flax-serialized).

    make_jax.py --kind dense|cnn --out DIR [--seed N]
"""

import argparse
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from common import step_done  # noqa: E402

MODULES = {
    "dense": ('''"""A Dense layer (Flax): 4 -> 3."""
import jax
import jax.numpy as jnp
from flax import linen as nn

SEED = {seed}


def build(params=None):
    module = nn.Dense(features=3)
    if params is None:
        params = module.init(jax.random.PRNGKey(SEED), jnp.ones((1, 4)))
    return module.apply, params
''', "b,4:float32"),
    "cnn": ('''"""A small Flax CNN: NHWC 16x16x3 -> 5 classes."""
import jax
import jax.numpy as jnp
from flax import linen as nn

SEED = {seed}


class SmallCNN(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(features=8, kernel_size=(3, 3))(x))
        x = nn.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
        x = nn.relu(nn.Conv(features=8, kernel_size=(3, 3), strides=(2, 2))(x))
        x = x.reshape((x.shape[0], -1))
        return nn.softmax(nn.Dense(features=5)(x))


def build(params=None):
    module = SmallCNN()
    if params is None:
        params = module.init(jax.random.PRNGKey(SEED), jnp.ones((1, 16, 16, 3)))
    return module.apply, params
''', "1,16,16,3:float32"),
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--kind", default="dense", choices=sorted(MODULES))
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    source, signature = MODULES[args.kind]
    path = os.path.join(args.out, "module.py")
    with open(path, "w") as fh:
        fh.write(source.replace("{seed}", str(args.seed)))
    import jax_user
    from flax import serialization

    _apply, params, _where = jax_user.build_model(f"{path}:build")
    with open(os.path.join(args.out, "params.msgpack"), "wb") as fh:
        fh.write(serialization.to_bytes(params))
    step_done(args.out, ["module.py", "params.msgpack"], kind=args.kind, input_signature=signature,
              build="module.py:build")


if __name__ == "__main__":
    main()
