"""Rewrites of ONNX graphs that onnx2tf converts wrongly or not at all, into equivalent graphs it converts exactly.
Each rewrite is a function ModelProto -> (ModelProto, [what it changed]); the conversion step tries them as a
remedy (the model onnxruntime runs as the reference is never changed).

torch_lrn: torch exports nn.LocalResponseNorm / F.local_response_norm not as an ONNX LRN node but through a 5-D
tensor: Mul(x, x) -> Unsqueeze/Reshape to (N, 1, C, H, W) -> Pad -> AveragePool(kernel [size, 1, 1]) ->
Squeeze (-> If) -> Mul(alpha) -> Add(k) -> Pow(beta), and Div(x, that). onnx2tf 1.29 cannot convert that 3-D
average pool (its padding path slices a 5-D tensor with 6 indices). The rewrite puts an ONNX LRN in place of
the Div when the window is symmetric (odd size: exactly torch's), else the same sum as a 1x1 convolution over
the squares with a banded 0/1 weight, which only needs 4-D ops.

erf_builtin: ONNX Erf (GELU as tf2onnx, Paddle2ONNX and torch below opset 20 write it) has no TFLite builtin, so
onnx2tf leaves a Flex op (FlexErf) that a plain TFLite/LiteRT interpreter cannot run. The rewrite computes erf from
builtin ops only, by Abramowitz and Stegun's formula 7.1.26 (absolute error below 1.5e-7):
erf(x) = sign(x) (1 - (a1 t + a2 t^2 + a3 t^3 + a4 t^4 + a5 t^5) exp(-x^2)), t = 1 / (1 + p |x|).

resize_matrices: onnx2tf maps Resize to TensorFlow's resize ops, which differ from ONNX's for many coordinate
transforms and roundings at non-integer or downscaling factors (nearest with floor, ceil or round_prefer_floor,
align_corners, asymmetric linear: errors near 1.0 of the output scale), and bicubic has no TFLite builtin. Every
Resize is separable, so on a static NCHW tensor it is two MatMuls with [out, in] matrices; the matrices are read
from onnxruntime (the reference) by resizing the identity along one axis, so they match it exactly in every mode.
"""

import numpy as np


def _attrs(node):
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _constants(graph):
    """{tensor name: numpy value} of initializers and Constant nodes."""
    from onnx import numpy_helper

    found = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute:
            a = _attrs(node)
            if "value" in a:
                found[node.output[0]] = numpy_helper.to_array(a["value"])
            elif "value_float" in a:
                found[node.output[0]] = np.asarray(a["value_float"], np.float32)
    return found


def _scalar(constants, name):
    value = constants.get(name)
    return None if value is None or np.size(value) != 1 else float(np.asarray(value).reshape(-1)[0])


def _window(start, consumers, constants):
    """From Mul(x, x) forward to the 3-D AveragePool of torch's LRN: (size, channels before the centre) or None."""
    node, front = start, None
    for _ in range(5):
        following = consumers.get(node.output[0], [])
        if len(following) != 1:
            return None
        node = following[0]
        if node.op_type == "AveragePool":
            a = _attrs(node)
            kernel, strides = list(a.get("kernel_shape", [])), list(a.get("strides", [1, 1, 1]))
            if len(kernel) != 3 or kernel[1:] != [1, 1] or strides != [1, 1, 1]:
                return None
            pads = list(a.get("pads", [0] * 6))
            if pads[0] or pads[3]:
                front = pads[0]  # the Pad folded into the pool
            size = int(kernel[0])
            return size, size // 2 if front is None else int(front)
        if node.op_type == "Pad":
            pads = np.asarray(constants.get(node.input[1], [])).reshape(-1) if len(node.input) > 1 else []
            if len(pads) == 10:  # (N, 1, C, H, W): the channel axis is 2
                front = int(pads[2])
        elif node.op_type not in ("Reshape", "Unsqueeze"):
            return None
    return None


def _denominator(div, producer, constants):
    """Div(x, Pow(Add(Mul(s, alpha), k), beta)): (alpha, k, beta) or None."""
    power = producer.get(div.input[1])
    if power is None or power.op_type != "Pow":
        return None
    beta = _scalar(constants, power.input[1])
    add = producer.get(power.input[0])
    if beta is None or add is None or add.op_type != "Add":
        return None
    k_name, scaled = (add.input[1], add.input[0]) if add.input[1] in constants else (add.input[0], add.input[1])
    k = _scalar(constants, k_name)
    mul = producer.get(scaled)
    if k is None or mul is None or mul.op_type != "Mul":
        return None
    alpha = _scalar(constants, mul.input[1] if mul.input[1] in constants else mul.input[0])
    return None if alpha is None else (alpha, k, beta)


def _shapes(model):
    """{tensor name: [dim or None, ...]} from one ONNX shape inference ({} when it fails)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:
        return {}
    values = list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)
    return {v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
            for v in values}


def _channels(model, name):
    shape = _shapes(model).get(name)
    return shape[1] if shape and len(shape) >= 2 else None


def _banded_sum(model, x, out, size, front, alpha, k, beta, tag):
    """Nodes and initializers computing x / (k + alpha/size * sum over the channel window of x^2)^beta."""
    from onnx import helper, numpy_helper

    channels = _channels(model, x)
    if channels is None:
        return None
    weight = np.zeros((channels, channels, 1, 1), np.float32)
    for o in range(channels):
        weight[o, max(0, o - front):min(channels, o + size - front), 0, 0] = 1.0
    names = {s: f"{tag}/{s}" for s in ("w", "alpha", "k", "beta", "sq", "sum", "scaled", "base", "den")}
    inits = [numpy_helper.from_array(weight, names["w"]),
             numpy_helper.from_array(np.asarray(alpha / size, np.float32), names["alpha"]),
             numpy_helper.from_array(np.asarray(k, np.float32), names["k"]),
             numpy_helper.from_array(np.asarray(beta, np.float32), names["beta"])]
    nodes = [helper.make_node("Mul", [x, x], [names["sq"]], name=names["sq"]),
             helper.make_node("Conv", [names["sq"], names["w"]], [names["sum"]], name=names["sum"], kernel_shape=[1, 1]),
             helper.make_node("Mul", [names["sum"], names["alpha"]], [names["scaled"]], name=names["scaled"]),
             helper.make_node("Add", [names["scaled"], names["k"]], [names["base"]], name=names["base"]),
             helper.make_node("Pow", [names["base"], names["beta"]], [names["den"]], name=names["den"]),
             helper.make_node("Div", [x, names["den"]], [out], name=f"{tag}/div")]
    return nodes, inits


def _used_by_subgraphs(node):
    import onnx

    names = set()
    for a in node.attribute:
        graphs = [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)
        for g in graphs:
            for inner in g.node:
                names.update(inner.input)
                names.update(_used_by_subgraphs(inner))
    return names


def _prune(graph):
    """Drop nodes and initializers nothing needs any more."""
    needed = {o.name for o in graph.output}
    kept = []
    for node in reversed(list(graph.node)):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(i for i in node.input if i)
            needed.update(_used_by_subgraphs(node))
    kept.reverse()
    del graph.node[:]
    graph.node.extend(kept)
    inits = [t for t in graph.initializer if t.name in needed]
    del graph.initializer[:]
    graph.initializer.extend(inits)


def torch_lrn(model):
    import onnx
    from onnx import helper

    result = onnx.ModelProto()
    result.CopyFrom(model)
    graph = result.graph
    producer = {o: n for n in graph.node for o in n.output}
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    constants = _constants(graph)
    replacements, inits, changes = {}, [], []
    for square in graph.node:
        if square.op_type != "Mul" or square.input[0] != square.input[1]:
            continue
        x = square.input[0]
        window = _window(square, consumers, constants)
        if window is None:
            continue
        size, front = window
        for div in consumers.get(x, []):
            if div.op_type != "Div" or div.input[0] != x or div.output[0] in replacements:
                continue
            params = _denominator(div, producer, constants)
            if params is None:
                continue
            alpha, k, beta = params
            tag = f"lrn_rewrite_{len(changes)}"
            if size % 2 == 1 and front == size // 2:
                replacements[div.output[0]] = [helper.make_node("LRN", [x], [div.output[0]], name=tag, size=size,
                                                                alpha=alpha, beta=beta, bias=k)]
                how = "ONNX LRN"
            else:
                built = _banded_sum(result, x, div.output[0], size, front, alpha, k, beta, tag)
                if built is None:
                    continue
                replacements[div.output[0]], more = built
                inits += more
                how = "1x1 convolution over the squares"
            changes.append(f"LRN of size {size} on '{x}' as {how}")
    if not replacements:
        return model, []
    nodes = []
    for node in graph.node:
        nodes.extend(replacements.get(node.output[0], [node]) if node.op_type == "Div" else [node])
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(inits)
    _prune(graph)
    return result, changes


ERF_P = 0.3275911
ERF_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def erf_builtin(model):
    """Each Erf node replaced by builtin-only ops (Abs, Sign, Mul, Add, Div, Exp, Neg, Sub)."""
    import onnx
    from onnx import helper, numpy_helper

    result = onnx.ModelProto()
    result.CopyFrom(model)
    graph = result.graph
    erfs = [n for n in graph.node if n.op_type == "Erf" and not n.domain]
    if not erfs:
        return result, []
    consts = {"erf_one": 1.0, "erf_p": ERF_P, **{f"erf_a{i + 1}": a for i, a in enumerate(ERF_A)}}
    taken = {t.name for t in graph.initializer}
    graph.initializer.extend(numpy_helper.from_array(np.asarray(v, np.float32), k) for k, v in consts.items()
                             if k not in taken)
    nodes, changes = [], []
    for node in graph.node:
        if node not in erfs:
            nodes.append(node)
            continue
        x, out, tag = node.input[0], node.output[0], (node.name or node.output[0]) + "/erf"

        def op(kind, *inputs, name=None):
            made = f"{tag}/{name or kind.lower()}_{len(nodes)}"
            nodes.append(helper.make_node(kind, list(inputs), [made], name=made))
            return made

        a = op("Abs", x)
        t = op("Div", "erf_one", op("Add", "erf_one", op("Mul", "erf_p", a)))
        poly = op("Mul", t, "erf_a5")
        for coeff in ("erf_a4", "erf_a3", "erf_a2", "erf_a1"):
            poly = op("Mul", t, op("Add", poly, coeff))
        tail = op("Mul", poly, op("Exp", op("Neg", op("Mul", a, a))))
        nodes.append(helper.make_node("Mul", [op("Sign", x), op("Sub", "erf_one", tail)], [out], name=tag))
        changes.append(f"Erf '{node.name or out}' -> builtin ops (A&S 7.1.26)")
    del graph.node[:]
    graph.node.extend(nodes)
    return result, changes


RESIZE_KEPT = {"mode", "coordinate_transformation_mode", "cubic_coeff_a", "exclude_outside", "extrapolation_value",
               "nearest_mode", "antialias"}


def _axis_matrix(attrs, length, scale=None, size=None):
    """The [out, in] matrix a Resize applies along one axis, read from onnxruntime itself (the reference): the
    identity's columns resized along that axis. Nearest, linear and cubic resizing are separable, and an axis of
    length 1 at scale 1 is left unchanged."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.zeros(0, np.float32), "roi")]
    if scale is not None:
        inits.append(numpy_helper.from_array(np.asarray([1, 1, scale, 1], np.float32), "scales"))
        inputs = ["x", "roi", "scales"]
    else:
        inits.append(numpy_helper.from_array(np.asarray([1, length, size, 1], np.int64), "sizes"))
        inputs = ["x", "roi", "", "sizes"]
    newer = attrs.get("antialias") or attrs.get("coordinate_transformation_mode") in (b"half_pixel_symmetric",
                                                                                    "half_pixel_symmetric")
    node = helper.make_node("Resize", inputs, ["y"], **attrs)
    graph = helper.make_graph([node], "axis", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19 if newer else 13)], ir_version=8)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    eye = np.eye(length, dtype=np.float32).reshape(1, length, length, 1)
    return session.run(None, {"x": eye})[0][0, :, :, 0].T


def _resize_plan(node, constants, shape, opset):
    """(attributes, 'scale' or 'size', (h value, w value)) of a Resize this rewrite can express, else None."""
    a = _attrs(node)
    if node.op_type != "Resize" or set(a) - RESIZE_KEPT or not shape or len(shape) != 4 or None in shape[2:]:
        return None
    if a.get("coordinate_transformation_mode") in (b"tf_crop_and_resize", "tf_crop_and_resize"):
        return None
    slots = {"scales": 1} if opset < 11 else {"scales": 2, "sizes": 3}
    found = {}
    for kind, slot in slots.items():
        if len(node.input) > slot and node.input[slot] and np.size(constants.get(node.input[slot], [])):
            found[kind] = np.asarray(constants[node.input[slot]], np.float64).reshape(-1)
    if "sizes" in found:
        sizes = found["sizes"]
        if len(sizes) != 4 or (None not in shape[:2] and list(sizes[:2]) != shape[:2]):
            return None
        return a, "size", (int(sizes[2]), int(sizes[3]))
    scales = found.get("scales")
    if scales is None or len(scales) != 4 or scales[0] != 1 or scales[1] != 1:
        return None
    return a, "scale", (float(scales[2]), float(scales[3]))


def resize_matrices(model):
    """Each Resize of a static 4-D NCHW tensor (constant scales or sizes, any mode but tf_crop_and_resize)
    replaced by two MatMuls with its exact per-axis interpolation matrices. onnx2tf gets many modes wrong at
    non-integer and downscaling factors (nearest with floor/ceil/round_prefer_floor rounding, align_corners,
    asymmetric linear), and TFLite has no bicubic builtin (FlexResizeBicubic)."""
    import onnx
    from onnx import helper, numpy_helper

    result = onnx.ModelProto()
    result.CopyFrom(model)
    graph = result.graph
    opset = next((o.version for o in result.opset_import if o.domain in ("", "ai.onnx")), 13)
    constants = _constants(graph)
    shapes = _shapes(result) if any(n.op_type == "Resize" for n in graph.node) else {}
    nodes, inits, changes = [], [], []
    for node in graph.node:
        shape = shapes.get(node.input[0]) if node.op_type == "Resize" else None
        plan = _resize_plan(node, constants, shape, opset) if shape else None
        if plan is None:
            nodes.append(node)
            continue
        attrs, by, (vh, vw) = plan
        h, w = shape[2], shape[3]
        ah = _axis_matrix(attrs, h, **{by: vh})
        aw = _axis_matrix(attrs, w, **{by: vw})
        tag = (node.name or node.output[0]) + "/resize"
        names = {k: f"{tag}/{k}" for k in ("aw", "ah", "rows", "turned", "cols")}
        inits += [numpy_helper.from_array(aw.T.astype(np.float32), names["aw"]),
                  numpy_helper.from_array(ah.T.astype(np.float32), names["ah"])]
        nodes += [helper.make_node("MatMul", [node.input[0], names["aw"]], [names["rows"]], name=names["rows"]),
                  helper.make_node("Transpose", [names["rows"]], [names["turned"]], name=names["turned"],
                                   perm=[0, 1, 3, 2]),
                  helper.make_node("MatMul", [names["turned"], names["ah"]], [names["cols"]], name=names["cols"]),
                  helper.make_node("Transpose", [names["cols"]], [node.output[0]], name=tag, perm=[0, 1, 3, 2])]
        mode = attrs.get("mode", b"nearest")
        changes.append(f"Resize '{node.name or node.output[0]}' ({mode.decode() if isinstance(mode, bytes) else mode},"
                       f" {h}x{w} -> {ah.shape[0]}x{aw.shape[0]}) -> MatMuls with its interpolation matrices")
    if not changes:
        return result, []
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(inits)
    _prune(graph)
    return result, changes


# name -> rewrite, in the order the remedy applies them
REWRITES = {"torch_lrn": torch_lrn, "erf_builtin": erf_builtin, "resize_matrices": resize_matrices}


def apply_all(model):
    """(rewritten model, [changes]) after every rewrite that finds something."""
    changes = []
    for name, rewrite in REWRITES.items():
        model, made = rewrite(model)
        changes += [f"{name}: {c}" for c in made]
    return model, changes
