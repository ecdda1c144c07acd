"""Run inside a stack image (tf2: tf.keras 2.15; keras3 and onnx2tf: tf_keras): build small Keras 2 models of several
kinds, convert each to TFLite with the converter's usual Keras save and with keras_savedmodel's quick one, unquantized
and with dynamic-range quantization, and print one JSON line: {model: {"same": both flatbuffers equal byte for byte,
"deterministic": two usual conversions equal byte for byte (an LSTM's loop functions and a lookup table carry
names numbered per process, so theirs differ), "equivalent": the two models the same to an interpreter (signatures,
inputs, outputs, ops, and every output exactly equal on random inputs), "quick": saves done the quick way, "usual":
saves done the usual way, "error": what the conversions said when they failed ("equivalent": every one said the
same, file locations aside)}}.

    python keras_savedmodel_probe.py tf.keras|tf_keras      (with /opt/steps importable)
"""

import json
import re
import sys

import numpy as np
import tensorflow as tf

sys.path.insert(0, "/opt/steps")
import keras_savedmodel  # noqa: E402


def models(k):
    """{name: a built Keras 2 model}: what the converter's Keras path meets in practice."""
    L = k.layers
    x = L.Input((24, 24, 3), name="image")
    y = L.Conv2D(8, 3, padding="same")(x)
    y = L.BatchNormalization()(y)
    y = L.ReLU(6.0)(y)
    y = L.DepthwiseConv2D(3, padding="same")(y)
    y = L.MaxPooling2D()(y)
    y = L.GlobalAveragePooling2D()(y)
    cnn = k.Model(x, L.Dense(4, activation="softmax", name="probs")(y))

    mlp = k.Sequential([L.Input((10,)), L.Dense(16, activation="tanh"), L.Dropout(0.5), L.Dense(3)])

    a, b = L.Input((6,), name="a"), L.Input((4,), name="b")
    joined = L.Concatenate()([L.Dense(5)(a), b])
    two = k.Model([a, b], [L.Dense(2, name="first")(joined), L.Dense(1, activation="sigmoid", name="second")(joined)])

    tokens = L.Input((7,), batch_size=1, dtype="int32", name="tokens")  # static shapes: TFLite's fused LSTM
    seq = L.Embedding(50, 8)(tokens)
    rnn = k.Model(tokens, L.Dense(2)(L.LSTM(6)(seq)))

    ids = L.Input((3,), dtype="int64", name="ids")
    looked = L.IntegerLookup(vocabulary=[3, 5, 7], output_mode="int")(ids)
    table = k.Model(ids, L.Dense(2)(tf.cast(looked, tf.float32)))
    return {"cnn": cnn, "mlp": mlp, "two_in_two_out": two, "embedding_lstm": rnn, "lookup_table": table}


def convert(model, quick, quantize):
    keras_savedmodel.COUNTS.update(quick=0, usual=0)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if quantize:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    try:
        if quick:
            with keras_savedmodel.quick_keras_saves():
                return converter.convert(), dict(keras_savedmodel.COUNTS)
        return converter.convert(), None
    except Exception as exc:  # the same failure both ways is a pass too
        said = re.sub(r"\S+\.py:\d+:\d+: ", "", str(exc).strip().splitlines()[0])  # where it was called from
        return "error: " + said[:300], dict(keras_savedmodel.COUNTS) if quick else None


def equivalent(a, b):
    """Whether two flatbuffers are the same model to the interpreter, exactly."""
    runs = []
    for flatbuffer in (a, b):
        interp = tf.lite.Interpreter(model_content=flatbuffer)
        interp.allocate_tensors()
        facts = [interp.get_signature_list(),
                 [(d["name"], list(d["shape"]), str(d["dtype"])) for d in interp.get_input_details()],
                 [(d["name"], list(d["shape"]), str(d["dtype"])) for d in interp.get_output_details()],
                 [op["op_name"] for op in interp._get_ops_details()]]
        rng = np.random.default_rng(0)
        for _ in range(3):
            for d in interp.get_input_details():
                value = rng.integers(0, 9, d["shape"]) if d["dtype"] in (np.int32, np.int64) else \
                    rng.uniform(-1, 1, d["shape"])
                interp.set_tensor(d["index"], value.astype(d["dtype"]))
            interp.invoke()
            facts.append([interp.get_tensor(d["index"]).tolist() for d in interp.get_output_details()])
        runs.append(facts)
    return runs[0] == runs[1]


def main():
    if sys.argv[1] == "tf_keras":
        import tf_keras as k
    else:
        k = tf.keras
    np.random.seed(0)
    tf.random.set_seed(0)
    found = {}
    for name, model in models(k).items():
        for quantize in (False, True):
            usual, _ = convert(model, False, quantize)
            again, _ = convert(model, False, quantize)
            quick, counts = convert(model, True, quantize)
            failed = [r for r in (usual, again, quick) if isinstance(r, str)]
            found[name + ("_dynamic" if quantize else "")] = dict(
                counts, same=usual == quick, deterministic=usual == again, error=failed[0] if failed else None,
                equivalent=len(set(failed)) == 1 and usual == quick if failed else equivalent(usual, quick))
    print(json.dumps(found))


if __name__ == "__main__":
    main()
