"""The JAX route on the host: FILE.py:build as INPUT, repeated signature flags, planning (no Docker)."""

from pathlib import Path

import pytest

from orchestrator import formats, options, planner, verify
from orchestrator.cli import _normalize_argv
from orchestrator.errors import InputError, UsageError

TFJS = planner.plan("jax", "tfjs_graph_model")


def test_chain_goes_through_a_saved_model():
    assert [s.name for s in TFJS] == ["jax_to_tf_saved_model", "tf_saved_model_to_tfjs_graph"]
    assert [s.name for s in planner.plan("jax", "tflite")] == ["jax_to_tf_saved_model", "tf_saved_model_to_tflite"]
    check = verify.check_for(planner.plan("jax", "tflite"))
    assert (check.reference.stack, check.reference.script, check.reference_format) == ("tf2", "run_jax.py", "jax")


def test_code_input_keeps_the_function_name(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def build(): pass\n")
    got = formats.check_input("jax", f"{module}:build")
    assert got == Path(f"{module.resolve()}:build")
    assert got.name == "m.py:build" and got.parent == tmp_path.resolve()  # the folder is what gets mounted
    source = formats.check("jax", f"{module}:build")
    assert source.files == {"m.py": module.resolve()}  # the file is hashed, its folder mounted
    mounted = formats.get("jax").adapter.prepare(source, {}, tmp_path / "scratch")
    assert mounted.mounts == {str(tmp_path.resolve()): "/in/model"} and mounted.model == "/in/model/m.py:build"
    with pytest.raises(UsageError, match="takes FILE.py:FUNCTION"):
        formats.check_input("jax", str(module))
    with pytest.raises(InputError, match="no such file"):
        formats.check_input("jax", f"{tmp_path / 'absent.py'}:build")


def test_repeated_flags_are_joined_in_order():
    argv = ["convert", "jax", "m.py:build", "out", "--input-signature", "3,4:float32", "--no-verify",
            "--input_signature=b:int32", "--polymorphic-shapes", "(b, 4)", "--polymorphic_shapes", "(b,)"]
    assert _normalize_argv(argv) == ["convert", "jax", "m.py:build", "out", "--input_signature=3,4:float32;b:int32",
                                     "--verify=False", "--polymorphic_shapes=(b, 4);(b,)"]


def test_signature_values():
    got = options.validate(TFJS, {"input_signature": "3,4:float32;b, 4:int32", "polymorphic_shapes": (3, 4)})
    assert got == {"input_signature": "3,4:float32;b,4:int32", "polymorphic_shapes": "(3, 4)"}
    assert options.validate(TFJS, {"input_signature": (3, 4)})["input_signature"] == "3,4"  # fire's tuple
    with pytest.raises(UsageError, match="wants SHAPE:DTYPE"):
        options.validate(TFJS, {"input_signature": "3;4:float32!"})
    with pytest.raises(UsageError, match="jax2tf shape"):
        options.validate(TFJS, {"input_signature": "b,4", "polymorphic_shapes": "b, 4"})
    with pytest.raises(UsageError, match="needs --input_signature"):
        options.validate(TFJS, {})
