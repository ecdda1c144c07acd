"""Protocol-buffer wire format, written by hand: the corpus makes small ONNX models with it (external data, absurd
shapes) without any ONNX library on the host."""


def varint(n):
    n &= (1 << 64) - 1  # negative int64 values take ten bytes, as protobuf writes them
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def number(field, value):
    return varint(field << 3) + varint(value)


def nested(field, payload):
    payload = payload.encode() if isinstance(payload, str) else bytes(payload)
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def onnx_value_info(name, dims):
    """ValueInfoProto: a float tensor; an int dim is a dim_value, a str one a dim_param."""
    shape = b"".join(nested(1, number(1, d) if isinstance(d, int) else nested(2, d)) for d in dims)
    tensor_type = number(1, 1) + nested(2, shape)
    return nested(1, name) + nested(2, nested(1, tensor_type))


def onnx_model(input_dims=(1, 4), external=None):
    """An ONNX model y = x @ w with w a 4x3 float initializer: raw data inside, or, given `external` ({"location",
    "offset", "length"} as strings), in an external data file."""
    tensor = number(1, 4) + number(1, 3) + number(2, 1) + nested(8, "w")
    if external is None:
        tensor += nested(9, bytes(48))
    else:
        tensor += b"".join(nested(13, nested(1, k) + nested(2, v)) for k, v in external.items()) + number(14, 1)
    node = nested(1, "x") + nested(1, "w") + nested(2, "y") + nested(3, "mm") + nested(4, "MatMul")
    graph = (nested(1, node) + nested(2, "g") + nested(5, tensor) + nested(11, onnx_value_info("x", input_dims))
             + nested(12, onnx_value_info("y", (input_dims[0], 3))))
    return number(1, 8) + nested(2, "robustness") + nested(7, graph) + nested(8, nested(1, "") + number(2, 13))
