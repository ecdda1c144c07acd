"""JAX/Flax -> SavedModel with jax2tf, as tensorflowjs' convert_jax prepares it (then the TF.js converter or the
TFLite converter takes the SavedModel in the next step).

    jax_to_saved_model.py --input /in/model/FILE.py:build --out DIR --input_signature "3,4:float32[;...]"
                          [--polymorphic_shapes "(b, 4)[;...]"] [--params FILE.msgpack]
Like convert_jax: jax2tf without XLA ops (neither TF.js nor TFLite runs them), with gradients, the params as
tf.Variables, one `serving_default` signature. Inputs are named input_0, ...; outputs output_0, ... (the leaves
of apply_fn's result, in JAX's order). Writes DIR/saved_model and DIR/step.json.
"""

import argparse
import contextlib
import os

import jax_user
from common import first_line, reject, step_done


@contextlib.contextmanager
def no_shape_assertions():
    """jax2tf's graph serialization (the only one with enable_xla=False) turns the constraints of polymorphic
    shapes (e.g. b >= 1) into tf.debugging.assert_equal, an If/AssertGuard that tensorflowjs_converter lowers to
    Switch/Merge: TF.js would then refuse model.execute() and predict() ("use executeAsync"). JAX 0.4.34 has no
    option for that in this mode, so its shape_assertion primitive is made a no-op while the function is traced
    and saved (saving traces the gradient too). The cost: a batch that breaks a constraint is not refused at run
    time. This reaches into jax2tf's module internals (tf_impl); a JAX upgrade must recheck it (the e2e test runs
    the result with execute())."""
    from jax.experimental.jax2tf import jax2tf as impl

    primitive = impl.shape_poly.shape_assertion_p
    original = impl.tf_impl[primitive]
    impl.tf_impl[primitive] = lambda *error_message_inputs, error_message: []
    try:
        yield
    finally:
        impl.tf_impl[primitive] = original


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--input", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--input_signature")
    p.add_argument("--polymorphic_shapes")
    p.add_argument("--params")
    args = p.parse_args()

    sigs = jax_user.signatures(args.input_signature)
    poly = jax_user.polymorphic_shapes(args.polymorphic_shapes, sigs)
    apply_fn, params, where = jax_user.build_model(args.input, args.params)
    leaves = jax_user.check_signatures(apply_fn, params, sigs, where)

    import jax
    import tensorflow as tf
    from jax.experimental import jax2tf

    tf_fn = jax2tf.convert(apply_fn, with_gradient=True, enable_xla=False,
                           polymorphic_shapes=[None, *poly] if poly else None)
    param_vars = tf.nest.map_structure(lambda v: tf.Variable(v, trainable=True), params)

    def serve(*xs):
        flat = tf.nest.flatten(tf_fn(param_vars, *xs))
        return {f"output_{i}": t for i, t in enumerate(flat)}

    graph = tf.function(serve, autograph=False, jit_compile=False)
    specs = [tf.TensorSpec(s.tf_shape, tf.as_dtype(s.dtype), name=s.name) for s in sigs]
    with no_shape_assertions() if poly else contextlib.nullcontext():
        try:
            concrete = graph.get_concrete_function(*specs)
        except Exception as exc:
            reject(f"{where}: jax2tf cannot convert it for these signatures ({first_line(exc)})")
        wrapper = tf.train.Checkpoint()
        wrapper.variables = tf.nest.flatten(param_vars)
        wrapper.serve = graph
        target = os.path.join(args.out, "saved_model")
        tf.saved_model.save(wrapper, target, signatures={"serving_default": concrete},
                            options=tf.saved_model.SaveOptions(experimental_custom_gradients=True))
    step_done(args.out, ["saved_model"], source=where, jax=jax.__version__,
              input_signatures=[{"name": s.name, "shape": s.dims, "dtype": s.dtype} for s in sigs],
              polymorphic_shapes=poly, shape_assertions="left out (TF.js execute() runs the graph)" if poly else None,
              outputs=[{"name": f"output_{i}", "shape": list(leaf.shape),
                                                 "dtype": str(leaf.dtype)} for i, leaf in enumerate(leaves)],
              parameters=int(sum(getattr(v, "size", 1) for v in jax.tree_util.tree_leaves(params))),
              params_file=os.path.basename(args.params) if args.params else None)


if __name__ == "__main__":
    main()
