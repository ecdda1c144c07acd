"""Protocol-buffer wire format, read on the host without any ML library: enough to tell whether a file is the
message it claims to be (a SavedModel, a frozen GraphDef, an ONNX model), to find a field, and to say where a
truncated or corrupt one breaks. A schema names the fields checked: {number: (wire type or None, schema of the
nested message or None)}."""

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5
WIRE_NAMES = {VARINT: "a number", FIXED64: "8 bytes", LENGTH: "a length-delimited field", FIXED32: "4 bytes"}


class WireError(ValueError):
    """Bytes that are not a protobuf message of the expected kind; the message says where."""


def varint(buf, pos, end=None):
    end = len(buf) if end is None else end
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise WireError(f"a number at byte {pos} runs past the end")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def signed(value):
    """An int64 read as a varint (negative numbers are written as their 64-bit two's complement)."""
    return value - (1 << 64) if value >= 1 << 63 else value


def walk(buf, start=0, end=None):
    """(field number, wire type, value) of each field of the message in buf[start:end]: the number for a varint,
    (start, end) of the bytes for the others. Raises WireError where the bytes break the wire format."""
    pos, end = start, len(buf) if end is None else end
    while pos < end:
        at = pos
        key, pos = varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise WireError(f"field number 0 at byte {at}")
        if wire == VARINT:
            value, pos = varint(buf, pos, end)
        elif wire in (FIXED64, FIXED32):
            size = 8 if wire == FIXED64 else 4
            if pos + size > end:
                raise WireError(f"field {number} at byte {at} runs past the end")
            value, pos = (pos, pos + size), pos + size
        elif wire == LENGTH:
            size, pos = varint(buf, pos, end)
            if pos + size > end:
                raise WireError(f"field {number} at byte {at} runs past the end ({size} bytes declared, "
                                f"{end - pos} left)")
            value, pos = (pos, pos + size), pos + size
        else:
            raise WireError(f"field {number} at byte {at} has wire type {wire}, which no message here uses")
        yield number, wire, value


def check(buf, schema, start=0, end=None, strict=False, required=(), what="message"):
    """Walk a message and the nested messages its schema names, checking the wire type of every named field.
    `strict`: a field number the schema does not name is an error too (tells apart messages that share the wire
    format). `required`: field numbers that must be there. Returns the set of field numbers found."""
    found = set()
    for number, wire, value in walk(buf, start, end):
        found.add(number)
        if number not in schema:
            if strict:
                raise WireError(f"{what} has no field {number}")
            continue
        expected, nested = schema[number]
        if expected is not None and wire != expected:
            raise WireError(f"field {number} of the {what} should be {WIRE_NAMES[expected]}, not "
                            f"{WIRE_NAMES[wire]}")
        if nested is not None:
            sub_schema, sub_strict, sub_required, sub_what = nested
            check(buf, sub_schema, value[0], value[1], sub_strict, sub_required, sub_what)
    missing = [n for n in required if n not in found]
    if missing:
        raise WireError(f"the {what} has no field {missing[0]}")
    return found


def message(schema, strict=False, required=(), what="message"):
    """A nested message's entry in a schema."""
    return (LENGTH, (schema, strict, required, what))


def first(buf, number, start=0, end=None):
    """(start, end) of the first length-delimited field `number`, or None."""
    return next((v for n, w, v in walk(buf, start, end) if n == number and w == LENGTH), None)


def text(buf, span):
    return bytes(buf[span[0]:span[1]]).decode("utf-8", "replace")


# -- TensorFlow: GraphDef, SavedModel --------------------------------------------------------------------------------
NODE_DEF = {1: (LENGTH, None), 2: (LENGTH, None), 3: (LENGTH, None), 4: (LENGTH, None), 5: (LENGTH, None)}
GRAPH_DEF = {1: message(NODE_DEF, required=(2,), what="NodeDef"), 2: (LENGTH, None), 3: (VARINT, None),
             4: (LENGTH, None), 5: (LENGTH, None)}
META_GRAPH_DEF = {n: (LENGTH, None) for n in range(1, 8)}
META_GRAPH_DEF[2] = message(GRAPH_DEF, strict=True, what="GraphDef")
SAVED_MODEL = {1: (VARINT, None), 2: message(META_GRAPH_DEF, required=(2,), what="MetaGraphDef")}
