"""The TFLite converter's Keras 2 path (tf.keras 2.x and tf_keras) without its slow part, for every stack that
converts Keras models to TFLite: tf2's and keras3's to_tflite.py (through tflite_convert.py) and onnx2tf, which
builds a tf_keras model and calls TFLiteConverter.from_keras_model twice (float32, float16).

from_keras_model(model).convert() first writes the model into a temporary SavedModel with
tensorflow.python.saved_model.save, which hands a Keras model to Keras's own SavedModel serialization: every layer's
call functions are traced again so that the folder could be loaded back as Keras. The converter then reads back only
the folder's "serving_default" signature, which is Keras's default save signature (the model called with
training=False, returning {output name: tensor}), and the variables it captures.

Inside `quick_keras_saves()` that save writes just that: the same signature function, made by Keras's own
`default_save_signature`, on a plain tf.Module holding the model's variables. The converter reads the same
signature and variables, so the flatbuffer is the same byte for byte (tests/e2e/test_e2e_keras_savedmodel.py checks
it on generated models in the tf2, keras3 and onnx2tf images); MobileNetV2's conversion took 15.5 s and takes 4.0 s.
A model this cannot save (a captured resource such as a lookup table, a call that cannot be traced) is saved the
usual way, as is every other save: a Keras 3 model (the converter exports those itself), a save given its own
signatures, any save outside the converter.
"""

import contextlib
import importlib
import os
import shutil

SERVING = "serving_default"
KERAS_PACKAGES = ("keras", "tf_keras")
COUNTS = {"quick": 0, "usual": 0}  # how the saves went in this process (the contract test reads them)


def keras_package(model):
    """"keras" or "tf_keras": the Keras 2 package whose Model `model` is, else None."""
    for klass in type(model).__mro__:
        package = klass.__module__.split(".")[0]
        if klass.__name__ == "Model" and package in KERAS_PACKAGES:
            return package
    return None


def serving_signature(model):
    """Keras's default save signature of a Keras 2 model (a ConcreteFunction), or None: not a Keras 2 model, a
    Keras without its legacy SavedModel code (Keras 3), or a model whose call cannot be traced."""
    package = keras_package(model)
    if package is None:
        return None
    try:
        save_impl = importlib.import_module(package + ".src.saving.legacy.saved_model.save_impl")
        fn = save_impl.default_save_signature(model)
        if fn is not None and hasattr(fn, "get_concrete_function"):
            fn = fn.get_concrete_function()
    except Exception:  # Keras raises many types for models it cannot trace: the usual save says why
        return None
    return fn


def variables_holder(model):
    import tensorflow as tf

    holder = tf.Module()
    holder.model_variables = list(model.variables)
    return holder


def _empty(folder):
    """What a failed save left in `folder` (the converter's temporary one) goes; the folder stays."""
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.remove(path)


class QuickSave(object):
    """Stands for the module tensorflow.python.saved_model.save inside the converter's module: its save() of a
    Keras 2 model with no signatures of its own writes only the serving signature and the variables; anything else
    is the real module's. `signature` and `holder` are what make those two (TensorFlow-free tests pass their own)."""

    def __init__(self, real, signature=serving_signature, holder=variables_holder):
        self._real, self._signature, self._holder = real, signature, holder

    def __getattr__(self, name):
        return getattr(self._real, name)

    def save(self, obj, export_dir, signatures=None, options=None):
        if signatures is None:
            fn = self._signature(obj)
            if fn is not None:
                try:
                    result = self._real.save(self._holder(obj), export_dir, signatures={SERVING: fn}, options=options)
                    COUNTS["quick"] += 1
                    return result
                except Exception:  # e.g. "untracked resource" (a lookup table): Keras's own save knows it
                    if os.path.isdir(str(export_dir)):
                        _empty(str(export_dir))
        COUNTS["usual"] += 1
        return self._real.save(obj, export_dir, signatures=signatures, options=options)


def install():
    """Put QuickSave in the converter's module for the rest of this process (an onnx2tf attempt's own); returns
    what it replaced, for `uninstall`."""
    from tensorflow.lite.python import lite

    real = getattr(lite, "_save", None)  # None: a TensorFlow whose converter saves otherwise, left as it is
    if real is not None and not isinstance(real, QuickSave):
        lite._save = QuickSave(real)
    return real


def uninstall(real):
    from tensorflow.lite.python import lite

    if real is not None:
        lite._save = real


@contextlib.contextmanager
def quick_keras_saves():
    """Within it, the TFLite converter's Keras 2 saves are quick ones (see the module's text)."""
    real = install()
    try:
        yield
    finally:
        uninstall(real)
