"""Run a JAX/Flax apply_fn for verification (the reference of the JAX routes).

    run_jax.py --format jax --input /in/model/FILE.py:build --out DIR --input_signature S [--params F]
               (--plan JSON | --inputs inputs.json)
Inputs are named input_0, ... (symbolic dimensions get size 2), outputs output_0, ... as in the SavedModel the
conversion builds. The perturbed run is apply_fn in float64 (jax_enable_x64). See common.verification_run.
"""

import numpy as np

import jax_user
import verify_io
from common import runner_arguments, verification_run


class JaxModel:
    def __init__(self, apply_fn, params, sigs, x64=False):
        self.apply_fn, self.params, self.sigs, self.x64 = apply_fn, params, sigs, x64

    def input_specs(self):
        return [verify_io.InputSpec(s.name, s.concrete, "float32" if s.dtype == "bfloat16" else s.dtype)
                for s in self.sigs]

    def run(self, feeds):
        arrays = [np.asarray(feeds[s.name]).astype(s.dtype) for s in self.sigs]
        params = self.params
        if self.x64:
            import jax

            params = jax.tree_util.tree_map(lambda p: np.asarray(p, np.float64) if np.asarray(p).dtype.kind == "f"
                                            else p, params)
            arrays = [a.astype(np.float64) if a.dtype.kind == "f" else a for a in arrays]
        results = jax_user.flat_outputs(self.apply_fn(params, *arrays))
        return [(f"output_{i}", np.asarray(v, dtype=np.float64 if self.x64 else np.float32) if v.dtype.kind == "f"
                 else v) for i, v in enumerate(results)]

    def perturbed(self):
        import jax

        jax.config.update("jax_enable_x64", True)
        twin = JaxModel(self.apply_fn, self.params, self.sigs, x64=True)
        try:
            twin.run({s.name: np.zeros(s.concrete, "float32" if s.dtype == "bfloat16" else s.dtype)
                      for s in self.sigs})
        except Exception:
            jax.config.update("jax_enable_x64", False)
            return None, None
        return twin, "apply_fn in float64 (jax_enable_x64)"


def main():
    args = runner_arguments(formats=["jax"], options=("input_signature", "polymorphic_shapes", "params"))
    sigs = jax_user.signatures(args.input_signature)
    apply_fn, params, where = jax_user.build_model(args.input, args.params)
    jax_user.check_signatures(apply_fn, params, sigs, where)
    verification_run(JaxModel(apply_fn, params, sigs), args,
                     {"source": where, "symbolic_dimension_size": jax_user.SYMBOLIC_SIZE})


if __name__ == "__main__":
    main()
