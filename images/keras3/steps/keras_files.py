"""Loading the Keras files the keras3 stack reads: Keras 3 `.keras` archives and `.h5` files (any backend; loaded
with TensorFlow's), and tf_keras 2.16+ HDF5 files and SavedModel folders (through tf_keras, TF's legacy Keras)."""

import json
import os
import zipfile

import numpy as np

from common import Spec, first_line, reject


def producer(path):
    """{"library": "keras"|"tf_keras", "version": ..., "backend": ...} as the file records it."""
    if os.path.isdir(path):  # a Keras SavedModel of TF 2.16+: tf_keras wrote it (Keras 3 writes no SavedModels)
        return {"library": "tf_keras", "version": "", "container": "saved_model"}
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            meta = json.loads(archive.read("metadata.json")) if "metadata.json" in archive.namelist() else {}
        return {"library": "keras", "version": str(meta.get("keras_version", "")), "container": "keras"}
    import h5py

    with h5py.File(path, "r") as f:
        attrs = {k: (v.decode() if isinstance(v, bytes) else str(v)) for k, v in f.attrs.items()
                 if k in ("keras_version", "backend")}
    version = attrs.get("keras_version", "")
    library = "tf_keras" if version.startswith("2.") else "keras"
    return {"library": library, "version": version, "backend": attrs.get("backend", ""), "container": "h5"}


def load(path):
    """(model, producer facts). tf_keras files need TF_USE_LEGACY_KERAS before TensorFlow is imported."""
    facts = producer(path)
    if facts["library"] == "tf_keras":
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
        import tf_keras as library
    else:
        os.environ.setdefault("KERAS_BACKEND", "tensorflow")  # a model saved with JAX or torch loads here too
        import keras as library
    try:
        model = library.models.load_model(path, compile=False)
    except Exception as exc:  # h5py, keras and TF raise many types for unusable files
        reject(f"{path}: cannot load as a {facts['library']} {facts['version']} model ({first_line(exc)})")
    facts["loaded_with"] = f"{library.__name__} {library.__version__}"
    facts["loaded_backend"] = "tensorflow"  # whatever backend wrote it (an .h5 records it as "backend")
    return model, facts


def input_specs(model):
    names = getattr(model, "input_names", None) or [t.name for t in model.inputs]
    return [Spec(str(name).split(":")[0], list(t.shape), np.dtype(getattr(t.dtype, "as_numpy_dtype", t.dtype)))
            for name, t in zip(names, model.inputs)]




LOGIT_ACTIVATIONS = {"softmax": "Softmax", "sigmoid": "Sigmoid"}


def output_layers(model):
    """The layer writing each output (Keras 3 and tf_keras both keep it in the tensor's _keras_history)."""
    found = []
    for t in model.outputs:
        history = getattr(t, "_keras_history", None)
        found.append(history[0] if history else None)
    return found


def output_names(model):
    """The outputs by the name of the layer writing them, as Keras 2 and TF.js name them (a Keras 3 Sequential's
    own output_names are its tensors' generated names, e.g. keras_tensor_9)."""
    layers = output_layers(model)
    if all(layers) and len({layer.name for layer in layers}) == len(layers):
        return [layer.name for layer in layers]
    names = getattr(model, "output_names", None) or [t.name for t in model.outputs]
    return [str(n).split(":")[0] for n in names]


class KerasModel:
    """A Keras 3 or tf_keras model as verification runs it, with the logits of outputs whose layer ends in a
    softmax or sigmoid activation (that layer run once more with its activation made linear)."""

    def __init__(self, path):
        self.model, self.facts = load(path)
        self.inputs = input_specs(self.model)
        self.output_names = output_names(self.model)
        self._logit_layers = {}
        for i, layer in enumerate(output_layers(self.model)):
            name = getattr(getattr(layer, "activation", None), "__name__", "")
            if name in LOGIT_ACTIVATIONS:
                self._logit_layers[i] = layer

    @property
    def logit_ops(self):
        return {self.output_names[i]: LOGIT_ACTIVATIONS[layer.activation.__name__]
                for i, layer in self._logit_layers.items()}

    def _call(self, feeds):
        xs = [feeds[s.name] for s in self.inputs]
        outs = self.model(xs if len(xs) > 1 else xs[0], training=False)
        return outs if isinstance(outs, (list, tuple)) else [outs]

    def run(self, feeds):
        return [(n, np.asarray(o)) for n, o in zip(self.output_names, self._call(feeds))]

    def run_logits(self, feeds):
        if not self._logit_layers:
            return {}
        saved = {i: layer.activation for i, layer in self._logit_layers.items()}
        linear = (lambda x: x)
        try:
            for layer in self._logit_layers.values():
                layer.activation = linear
            outs = self._call(feeds)
        finally:
            for i, layer in self._logit_layers.items():
                layer.activation = saved[i]
        return {self.output_names[i]: np.asarray(outs[i]) for i in self._logit_layers}
