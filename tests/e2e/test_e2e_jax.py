"""JAX / Flax -> TF.js graph model and TFLite (TF2 stack: jax2tf, the TF.js and TFLite converters), through the
real CLI. The tests write the users' module files; JAX runs only inside the stack."""

import json

import pytest

from clihelp import cli, last_line, make_samples, manifest

pytestmark = pytest.mark.e2e

DENSE = '''
import jax
import jax.numpy as jnp
from flax import linen as nn


def build(params=None):
    module = nn.Dense(features=3)
    if params is None:
        params = module.init(jax.random.PRNGKey(0), jnp.ones((1, 4)))
    return module.apply, params
'''

CNN = '''
import jax
import jax.numpy as jnp
from flax import linen as nn


class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(features=8, kernel_size=(3, 3))(x))
        x = nn.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
        x = x.reshape((x.shape[0], -1))
        return nn.log_softmax(nn.Dense(features=4)(x))


def build():
    net = Net()
    return net.apply, net.init(jax.random.PRNGKey(1), jnp.ones((1, 12, 12, 3)))
'''

TWO_INPUTS = '''
import numpy as np


def apply(params, x, y):
    return x @ params["w"] + y, (x * 2.0).sum(axis=1)


def build():
    rng = np.random.default_rng(0)
    return apply, {"w": rng.normal(size=(4, 2)).astype("float32")}
'''

RAISES = '''
def build():
    raise ValueError("no trained weights here: run train.py first")
'''


def write(folder, name, text):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return f"{folder / name}:build"


def check(out, to, steps_after):
    m = manifest(out)
    assert m["route"] == {"from": "jax", "to": to, "steps": ["jax_to_tf_saved_model"] + steps_after}
    v = m["verification"]
    assert v["passed"] is True and v["outputs"] and all(o["passed"] for o in v["outputs"])
    assert v["steps"][0]["name"] == "verify_source" and v["steps"][0]["stack"] == "tf2"  # apply_fn in JAX
    assert m["steps"][0]["versions"]["jax"] == "0.4.34" and m["steps"][0]["versions"]["flax"]
    return m


def test_flax_dense_to_tfjs_with_dynamic_batch(stack_images, tmp_path):
    module = write(tmp_path / "src", "dense.py", DENSE)
    out = tmp_path / "out"
    proc = cli("convert", "jax", module, out, "--to", "tfjs_graph_model", "--input-signature", "b,4:float32",
               "--polymorphic-shapes", "(b, 4)")
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = check(out, "tfjs_graph_model", ["tf_saved_model_to_tfjs_graph"])
    assert m["steps"][0]["info"]["input_signatures"] == [{"name": "input_0", "shape": ["b", 4], "dtype": "float32"}]
    assert m["steps"][0]["info"]["polymorphic_shapes"] == ["(b, 4)"]
    v = m["verification"]
    assert v["steps"][1]["stack"] == "tfjs"  # the TF.js runtime ran the result
    # ... with model.execute(), the call users make: jax2tf's shape assertions (Merge/Switch) are left out
    assert v["result_execution"] == "execute" and "dynamic_ops" not in m["steps"][1]["info"]
    assert v["inputs"]["specs"][0]["shape"] == [2, 4]  # the dynamic batch, fed with 2 rows
    model = json.loads((out / "model.json").read_text())
    assert model["format"] == "graph-model"


def test_flax_cnn_to_tflite(stack_images, tmp_path):
    module = write(tmp_path / "src", "cnn.py", CNN)
    out = tmp_path / "out"
    proc = cli("convert", "jax", module, out, "--to", "tflite", "--input-signature", "1,12,12,3:float32")
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = check(out, "tflite", ["tf_saved_model_to_tflite"])
    assert (out / "model.tflite").read_bytes()[4:8] == b"TFL3" and (out / "saved_model" / "saved_model.pb").is_file()
    assert m["verification"]["outputs"][0]["shape"] == [1, 4]


def test_two_inputs_from_repeated_signatures(stack_images, tmp_path):
    module = write(tmp_path / "src", "two.py", TWO_INPUTS)
    out = tmp_path / "out"
    proc = cli("convert", "jax", module, out, "--to", "tflite", "--input-signature", "3,4:float32",
               "--input-signature", "3,2:float32")
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = check(out, "tflite", ["tf_saved_model_to_tflite"])
    assert [s["shape"] for s in m["steps"][0]["info"]["input_signatures"]] == [[3, 4], [3, 2]]
    assert sorted(o["shape"] for o in m["verification"]["outputs"]) == [[3], [3, 2]]


def test_float16_weights_and_a_params_file(stack_images, tmp_path):
    sample = make_samples(tmp_path, "jax", ["dense"])["dense"]
    out = tmp_path / "out"
    proc = cli("convert", "jax", f"{sample / 'module.py'}:build", out, "--to", "tfjs_graph_model",
               "--input-signature", "2,4:float32", "--params", sample / "params.msgpack", "--quantize_float16")
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = check(out, "tfjs_graph_model", ["tf_saved_model_to_tfjs_graph"])
    assert m["steps"][0]["info"]["params_file"] == "params.msgpack"
    assert m["steps"][1]["info"]["quantization"] == ["float16"]
    assert m["verification"]["mode"] == "weights_float16"


def test_bad_jax_inputs(stack_images, tmp_path):
    out = tmp_path / "out"
    dense = write(tmp_path / "src", "dense.py", DENSE)
    proc = cli("convert", "jax", dense.replace(":build", ":make_model"), out, "--input-signature", "3,4:float32")
    assert proc.returncode == 2 and "dense.py: defines no 'make_model'" in last_line(proc), proc.stderr[-2000:]
    raises = write(tmp_path / "src", "raises.py", RAISES)
    proc = cli("convert", "jax", raises, out, "--input-signature", "3,4:float32")
    assert proc.returncode == 2
    assert last_line(proc).endswith("raises.py: build() raised ValueError: no trained weights here: run train.py first")
    proc = cli("convert", "jax", dense, out, "--input-signature", "3,5:float32")
    assert proc.returncode == 2 and "--input_signature '3,5:float32' does not fit dense.py:build" in last_line(proc)
    proc = cli("convert", "jax", dense, out)
    assert proc.returncode == 2 and "needs --input_signature" in last_line(proc)
    proc = cli("convert", "jax", str(tmp_path / "src" / "dense.py"), out, "--input-signature", "3,4:float32")
    assert proc.returncode == 2 and "takes FILE.py:FUNCTION" in last_line(proc)
    assert not out.exists()
