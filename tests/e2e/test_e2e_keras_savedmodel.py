"""The contract of images/shared/keras_savedmodel.py, in every image whose steps convert Keras 2 models with the
TFLite converter (tf2: tf.keras 2.15; keras3: tf_keras 2.21; onnx2tf: tf_keras 2.19, onnx2tf's own Keras model):
on generated models of several kinds, the quick save gives the flatbuffer the usual save gives, byte for byte where
the converter is deterministic at all, and otherwise the same model to the interpreter, exactly; a conversion that
fails fails with the same message. A model the quick save cannot write (a lookup table) is saved the usual way.
The speed it buys is in bench/speed.md."""

import json
import os
from pathlib import Path

import pytest

from orchestrator import images

pytestmark = pytest.mark.e2e

HERE = Path(__file__).resolve().parent
KINDS = ("cnn", "mlp", "two_in_two_out", "embedding_lstm", "lookup_table")


@pytest.mark.parametrize("stack, keras", [("tf2", "tf.keras"), ("keras3", "tf_keras"), ("onnx2tf", "tf_keras")])
def test_quick_keras_saves_convert_to_the_same_flatbuffer(engine, stack_images, stack, keras):
    from orchestrator.engine import ContainerSpec, Mount

    spec = ContainerSpec(image=images.get_stack(stack).tag(), command=["python", "/t/keras_savedmodel_probe.py", keras],
                         mounts=[Mount(str(HERE), "/t", True)], user=f"{os.getuid()}:{os.getgid()}",
                         environment={"HOME": "/tmp", "TF_CPP_MIN_LOG_LEVEL": "3"}, name_hint="probe")
    result = engine.run(spec)
    assert result.exit_code == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert sorted(found) == sorted(k + q for k in KINDS for q in ("", "_dynamic"))
    for name, got in found.items():
        assert got["equivalent"], (name, got)
        if got["deterministic"]:
            assert got["same"], (name, got)
        table = name.startswith("lookup_table")
        assert (got["quick"], got["usual"]) == ((0, 1) if table else (1, 0)), (name, got)
        # everything but the table converts with builtins alone (TensorFlow 2.19+ wants Flex for a hash table)
        assert table or got["error"] is None, (name, got)
    # the plain models convert the same every time: byte for byte is what is checked on them
    assert all(found[k]["deterministic"] for k in ("cnn", "mlp", "two_in_two_out", "cnn_dynamic"))
