"""QuickSave (images/shared/keras_savedmodel.py), the TFLite converter's quick Keras save, with stand-ins for
TensorFlow's save module and Keras: which saves it takes over, what it writes them with, and that a failed quick save
leaves nothing behind and is done the usual way. That the flatbuffers come out the same is checked on real models in
real images (tests/e2e/test_e2e_keras_savedmodel.py)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "images" / "shared"))
import keras_savedmodel  # noqa: E402
from keras_savedmodel import QuickSave, keras_package  # noqa: E402


class RealSave:
    """tensorflow.python.saved_model.save as far as the converter uses it; `fail_for`: objects whose save raises
    after writing a file (as a save that meets an untracked resource does)."""

    fail_for = ()
    other_attribute = "forwarded"

    def __init__(self):
        self.calls = []

    def save(self, obj, export_dir, signatures=None, options=None):
        self.calls.append((obj, signatures, options))
        (Path(export_dir) / "saved_model.pb").write_text(repr(obj))
        (Path(export_dir) / "variables").mkdir(exist_ok=True)
        if obj in self.fail_for:
            raise ValueError("untracked resource")
        return "saved"


class Holder:
    def __init__(self, model):
        self.model = model

    def __eq__(self, other):
        return isinstance(other, Holder) and other.model == self.model

    def __hash__(self):
        return hash(self.model)

    def __repr__(self):
        return f"Holder({self.model})"


def signature_of(model):
    return None if model.startswith("plain") else f"signature({model})"


@pytest.fixture
def real():
    keras_savedmodel.COUNTS.update(quick=0, usual=0)
    return RealSave()


def test_a_keras_model_is_saved_as_its_serving_signature_and_variables(real, tmp_path):
    quick = QuickSave(real, signature=signature_of, holder=Holder)
    assert quick.save("keras-cnn", str(tmp_path), options="debug-info") == "saved"
    assert real.calls == [(Holder("keras-cnn"), {"serving_default": "signature(keras-cnn)"}, "debug-info")]
    assert keras_savedmodel.COUNTS == {"quick": 1, "usual": 0}


def test_other_saves_are_the_real_modules(real, tmp_path):
    quick = QuickSave(real, signature=signature_of, holder=Holder)
    quick.save("plain-module", str(tmp_path))  # not a Keras 2 model: no signature of its own
    quick.save("keras-cnn", str(tmp_path), signatures={"mine": "fn"})  # the caller chose its signatures
    assert real.calls == [("plain-module", None, None), ("keras-cnn", {"mine": "fn"}, None)]
    assert keras_savedmodel.COUNTS == {"quick": 0, "usual": 2}
    assert quick.other_attribute == "forwarded"


def test_a_failed_quick_save_leaves_nothing_and_saves_the_usual_way(real, tmp_path):
    real.fail_for = (Holder("keras-table"),)
    (tmp_path / "kept").mkdir()
    quick = QuickSave(real, signature=signature_of, holder=Holder)
    assert quick.save("keras-table", str(tmp_path)) == "saved"
    assert real.calls[1] == ("keras-table", None, None)
    assert (tmp_path / "saved_model.pb").read_text() == "'keras-table'"  # written by the usual save, not the quick one
    assert keras_savedmodel.COUNTS == {"quick": 0, "usual": 1}


def test_a_usual_save_that_fails_raises_as_before(real, tmp_path):
    real.fail_for = (Holder("keras-bad"), "keras-bad")
    quick = QuickSave(real, signature=signature_of, holder=Holder)
    with pytest.raises(ValueError, match="untracked resource"):  # the converter then falls back as it always did
        quick.save("keras-bad", str(tmp_path))


def test_keras_package_is_found_on_the_models_class_line():
    def model_class(package):
        return type("Model", (), {"__module__": f"{package}.src.engine.training"})

    keras_model = model_class("keras")
    subclassed = type("MyNet", (keras_model,), {"__module__": "user_code"})
    assert keras_package(subclassed()) == "keras"
    assert keras_package(model_class("tf_keras")()) == "tf_keras"
    assert keras_package(model_class("torch")()) is None
    assert keras_package("not a model") is None
