"""ONNX models read on the host with the wire-format reader (no onnx package): the ModelProto is walked to its end
(a truncated or corrupt file breaks it), then the graph's inputs (name and dims) and its initializers kept in
external data files (location, offset, length) are taken out for the input checks."""

from orchestrator import protowire as pw

DIMENSION = {1: (pw.VARINT, None), 2: (pw.LENGTH, None)}
GRAPH = {1: (pw.LENGTH, None), 2: (pw.LENGTH, None), 5: (pw.LENGTH, None), 11: (pw.LENGTH, None),
         12: (pw.LENGTH, None)}
MODEL = {1: (pw.VARINT, None), 2: (pw.LENGTH, None), 3: (pw.LENGTH, None), 4: (pw.LENGTH, None),
         5: (pw.VARINT, None), 6: (pw.LENGTH, None), 7: pw.message(GRAPH, what="GraphProto"), 8: (pw.LENGTH, None)}
EXTERNAL = 1  # TensorProto.DataLocation


def _fields(buf, span, number):
    return [v for n, w, v in pw.walk(buf, *span) if n == number]


def _value_info(buf, span):
    """(name, dims) of a ValueInfoProto; dims None when it has no tensor shape, a str for a symbolic dimension and
    None for one with neither a value nor a name."""
    name = next((pw.text(buf, v) for v in _fields(buf, span, 1)), "")
    dims = None
    for type_span in _fields(buf, span, 2):
        for tensor in _fields(buf, type_span, 1):
            for shape in _fields(buf, tensor, 2):
                dims = []
                for dim in _fields(buf, shape, 1):
                    found = None
                    for n, w, v in pw.walk(buf, *dim):
                        if n == 1 and w == pw.VARINT:
                            found = pw.signed(v)
                        elif n == 2 and w == pw.LENGTH:
                            found = pw.text(buf, v)
                    dims.append(found)
    return name, dims


def _initializer(buf, span):
    """(name, {external data key: value} or None)"""
    name, entries, location = "", {}, 0
    for n, w, v in pw.walk(buf, *span):
        if n == 8 and w == pw.LENGTH:
            name = pw.text(buf, v)
        elif n == 13 and w == pw.LENGTH:
            pair = {k: pw.text(buf, s) for k, _, s in pw.walk(buf, *v) if _ == pw.LENGTH}
            entries[pair.get(1, "")] = pair.get(2, "")
        elif n == 14 and w == pw.VARINT:
            location = v
    return name, entries if location == EXTERNAL else None


def read(buf):
    """{"inputs": [(name, dims)], "external": [(tensor, {location, offset, length})]} of a ModelProto. Raises
    protowire.WireError where the bytes are not one."""
    pw.check(buf, MODEL, required=(1, 7), what="ModelProto")
    graph = pw.first(buf, 7)
    initializers = [_initializer(buf, v) for v in _fields(buf, graph, 5)]
    weights = {name for name, _ in initializers}
    inputs = [_value_info(buf, v) for v in _fields(buf, graph, 11)]
    return {"inputs": [(name, dims) for name, dims in inputs if name not in weights],
            "external": [(name, ext) for name, ext in initializers if ext is not None]}
