"""A SavedModel's signature as verification runs it (onnx2tf's and keras3's runners; tf2's graph-backed runner
builds on it): inputs and outputs in sorted-name order, the order TF flattens a signature in."""

import os

from common import Spec, csv, first_line, reject


class SignatureModel:
    def __init__(self, path, tags=None, signature="serving_default"):
        import tensorflow as tf

        tags = csv(tags) if isinstance(tags, str) else tags
        try:
            loaded = tf.saved_model.load(path, tags=tags or None)
        except Exception as exc:
            reject(f"{path}: cannot load SavedModel{' with tags ' + ','.join(tags) if tags else ''} "
                   f"({first_line(exc)})")
        if signature not in loaded.signatures:
            reject(f"{path}: no signature '{signature}'; signatures: {', '.join(loaded.signatures) or 'none'}")
        self.loaded, self.fn = loaded, loaded.signatures[signature]
        _, kwargs = self.fn.structured_input_signature
        self.inputs = [Spec(n, [d if d is not None else -1 for d in s.shape.as_list()], s.dtype.as_numpy_dtype)
                       for n, s in sorted(kwargs.items())]
        self.output_names = sorted(self.fn.structured_outputs)
        self.name = os.path.basename(os.path.normpath(path))

    def run(self, feeds):
        import tensorflow as tf

        out = self.fn(**{s.name: tf.constant(feeds[s.name]) for s in self.inputs})
        return [(n, out[n].numpy()) for n in self.output_names]
