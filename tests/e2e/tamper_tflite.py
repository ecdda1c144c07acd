"""Break a converted .tflite model in one known way, for the verification e2e tests.

The end-to-end tests use this to show that the project's verification really
catches a wrong conversion: take a good model.tflite, damage it in one
controlled way, and check the verifier rejects it.

It runs inside the project's tf2 image (TensorFlow 2.15) and needs nothing
beyond TensorFlow's own flatbuffer helpers:

    python tamper_tflite.py IN.tflite OUT.tflite --kind KIND [--seed N]

It writes the tampered model to OUT.tflite and prints one JSON line on stdout
saying what was changed. If KIND cannot apply to the model (no LRN op, no
non-square input, ...), it prints one line on stderr and exits with status 3.

Kinds (subgraph 0 only):
  conv_weight    filter of the first CONV_2D with constant float32 weights, times 1.01
  swap_channels  output channels 0 and 1 swapped in the filter [O, H, W, I] and bias
                 of the first CONV_2D whose output is not a model output
  drop_lrn       first LOCAL_RESPONSE_NORMALIZATION removed, its consumers fed its input
                 (if it produced a model output, its input's producer writes that output
                 tensor directly, so output names and the signature stay unchanged)
  zero_bias      constant bias of the first CONV_2D whose bias is not already zero, zeroed
  input_layout   TRANSPOSE perm [0, 2, 1, 3] (H <-> W) inserted after the first 4-D input
  float16        every float32 constant buffer rounded to float16 and back to float32

In the report, "op_index" is the operator's position (for drop_lrn, where the
removed op was) and "consumers" are operator indices in the tampered model. The
kinds are deterministic; --seed is accepted and echoed in the report so
callers can pass one uniformly.

The converter merges identical constants, so one tensor (or one buffer) can
feed several operators. Before changing one operator's filter or bias, that
input is given its own tensor and buffer (named "<name>/tamper_private"), so
only the named operator changes.
"""

import argparse
import copy
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from tensorflow.lite.python import schema_py_generated as schema  # noqa: E402
from tensorflow.lite.tools import flatbuffer_utils  # noqa: E402

EXIT_NOT_APPLICABLE = 3
SUBGRAPH = 0

Op = schema.BuiltinOperator
DType = schema.TensorType

OP_NAMES = {value: name for name, value in vars(Op).items() if not name.startswith("_")}
TYPE_NAMES = {value: name for name, value in vars(DType).items() if not name.startswith("_")}


class NotApplicable(Exception):
    """The requested kind of damage has nothing to act on in this model."""


# ---------------------------------------------------------------- model access


def op_code(model, op):
    """Builtin operator code of an operator (new and deprecated code fields)."""
    code = model.operatorCodes[op.opcodeIndex]
    return max(code.builtinCode, code.deprecatedBuiltinCode)


def ops_of(model, builtin):
    """(index, operator) for every operator of a builtin type in subgraph 0."""
    ops = model.subgraphs[SUBGRAPH].operators
    return [(i, op) for i, op in enumerate(ops) if op_code(model, op) == builtin]


def tensor(model, index):
    return model.subgraphs[SUBGRAPH].tensors[index]


def name_of(model, index):
    name = tensor(model, index).name
    return name.decode("utf-8", "replace") if isinstance(name, bytes) else name


def shape_of(model, index):
    shape = tensor(model, index).shape
    return [] if shape is None else [int(d) for d in shape]


def input_at(op, position):
    """Tensor index of an operator input, or -1 when absent/optional."""
    inputs = op.inputs
    return int(inputs[position]) if inputs is not None and len(inputs) > position else -1


def buffer_bytes(model, buffer_index):
    """Raw bytes of a buffer as a uint8 array, or None if empty or the sentinel."""
    if buffer_index == 0:
        return None
    data = model.buffers[buffer_index].data
    if data is None or len(data) == 0:
        return None
    return np.array(data, dtype=np.uint8)


def constant_bytes(model, index):
    """Raw bytes of a constant tensor, or None if the tensor is not constant."""
    if index < 0:
        return None
    return buffer_bytes(model, tensor(model, index).buffer)


def is_float32_constant(model, index):
    return constant_bytes(model, index) is not None and tensor(model, index).type == DType.FLOAT32


def read_float32(model, index):
    return np.frombuffer(constant_bytes(model, index).tobytes(), dtype="<f4").reshape(shape_of(model, index))


def buffer_users(model, buffer_index):
    return sum(t.buffer == buffer_index for sg in model.subgraphs for t in sg.tensors)


def add_buffer(model, raw):
    buf = schema.BufferT()
    buf.data = np.array(raw, dtype=np.uint8)
    model.buffers.append(buf)
    return len(model.buffers) - 1


def own_buffer(model, index):
    """Give a tensor a private copy of its buffer if other tensors share it."""
    t = tensor(model, index)
    if buffer_users(model, t.buffer) > 1:
        t.buffer = add_buffer(model, constant_bytes(model, index))
    return t.buffer


def tensor_users(model, index):
    """(operator, input position) pairs in subgraph 0 that read a tensor."""
    return [(op, pos) for op in model.subgraphs[SUBGRAPH].operators
            for pos, used in enumerate(op.inputs if op.inputs is not None else []) if int(used) == index]


def private_input(model, op, position):
    """Tensor index of an operator input, first cloned if other readers share it.

    The converter lets several operators read one constant tensor (identical
    zero biases, for instance); changing it in place would damage them all."""
    index = input_at(op, position)
    if len(tensor_users(model, index)) <= 1:
        return index
    template = tensor(model, index)
    clone = add_tensor(model, template=template, name=f"{name_of(model, index)}/tamper_private".encode())
    tensor(model, clone).buffer = add_buffer(model, constant_bytes(model, index))
    op.inputs = [int(v) for v in op.inputs]
    op.inputs[position] = clone
    return clone


def write_bytes(model, index, raw):
    buffer_index = own_buffer(model, index)
    model.buffers[buffer_index].data = np.frombuffer(np.ascontiguousarray(raw).tobytes(), dtype=np.uint8).copy()


def write_float32(model, index, values):
    write_bytes(model, index, np.asarray(values, dtype="<f4"))


def add_tensor(model, template=None, **fields):
    """Append a tensor (a copy of template, if given, with fields overridden)."""
    t = copy.deepcopy(template) if template is not None else schema.TensorT()
    t.buffer = 0
    for key, value in fields.items():
        setattr(t, key, value)
    tensors = model.subgraphs[SUBGRAPH].tensors
    tensors.append(t)
    return len(tensors) - 1


def opcode_index(model, builtin):
    """Index of a builtin in the operator code table, added if missing."""
    for i, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin and not code.customCode:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, 127)
    code.version = 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def replace_index(indices, old, new):
    """Replace a tensor index in an index list; returns the list and the count."""
    if indices is None:
        return indices, 0
    values = [int(v) for v in indices]
    count = values.count(old)
    return [new if v == old else v for v in values], count


def rewire_consumers(model, old, new, skip=None):
    """Make every operator (except `skip`) read tensor `new` instead of `old`."""
    consumers = []
    for i, op in enumerate(model.subgraphs[SUBGRAPH].operators):
        if op is skip:
            continue
        op.inputs, count = replace_index(op.inputs, old, new)
        if count:
            consumers.append(i)
    return consumers


def model_outputs(model):
    return [int(v) for v in model.subgraphs[SUBGRAPH].outputs]


def swap_first_two(values):
    """Copy of a sequence (list or numpy array) with items 0 and 1 exchanged."""
    values = np.array(values)
    values[[0, 1]] = values[[1, 0]]
    return values


def swap_quantization(model, index):
    """Per-channel quantization parameters follow a swap along axis 0."""
    q = tensor(model, index).quantization
    if q is None or q.scale is None or len(q.scale) < 2 or q.quantizedDimension != 0:
        return
    q.scale = swap_first_two(q.scale)
    if q.zeroPoint is not None and len(q.zeroPoint) >= 2:
        q.zeroPoint = swap_first_two(q.zeroPoint)


def swap_leading_rows(model, index):
    """Exchange slices 0 and 1 along the first axis, whatever the dtype."""
    raw = constant_bytes(model, index)
    rows = shape_of(model, index)[0]
    if raw.size % rows:
        raise NotApplicable(f"tensor {name_of(model, index)!r} is packed; cannot split into {rows} channels")
    write_bytes(model, index, swap_first_two(raw.reshape(rows, -1)))
    swap_quantization(model, index)


# ---------------------------------------------------------------- the kinds


def conv_report(model, index, op, **extra):
    report = {"op_index": index, "op": OP_NAMES[op_code(model, op)], "op_output": name_of(model, int(op.outputs[0]))}
    report.update(extra)
    return report


def tensor_report(model, index):
    return {"index": index, "name": name_of(model, index), "shape": shape_of(model, index),
            "dtype": TYPE_NAMES.get(tensor(model, index).type, "?")}


def tamper_conv_weight(model):
    for i, op in ops_of(model, Op.CONV_2D):
        if is_float32_constant(model, input_at(op, 1)):
            weights = private_input(model, op, 1)
            before = read_float32(model, weights)
            write_float32(model, weights, before * np.float32(1.01))
            change = float(np.max(np.abs(before)) * 0.01)
            return conv_report(model, i, op, filter=tensor_report(model, weights), factor=1.01,
                               max_abs_change=change)
    raise NotApplicable("no CONV_2D with constant float32 weights")


def tamper_swap_channels(model):
    last = len(model.subgraphs[SUBGRAPH].operators) - 1
    outputs = set(model_outputs(model))
    for i, op in ops_of(model, Op.CONV_2D):
        weights, bias = input_at(op, 1), input_at(op, 2)
        if i == last or int(op.outputs[0]) in outputs:
            continue
        if constant_bytes(model, weights) is None or shape_of(model, weights)[0] < 2:
            continue
        weights = private_input(model, op, 1)
        swap_leading_rows(model, weights)
        bias_info = None
        if constant_bytes(model, bias) is not None:
            bias = private_input(model, op, 2)
            swap_leading_rows(model, bias)
            bias_info = tensor_report(model, bias)
        return conv_report(model, i, op, filter=tensor_report(model, weights), bias=bias_info, channels=[0, 1])
    raise NotApplicable("no CONV_2D with a constant filter of 2+ output channels before the model's last op")


def producer_of(model, index):
    for op in model.subgraphs[SUBGRAPH].operators:
        if op.outputs is not None and index in [int(v) for v in op.outputs]:
            return op
    return None


def bypass_into_output(model, source, dropped):
    """The LRN output is a model output: its input's producer now writes it directly.

    Keeps the model's output tensor (index, name, signature entry) unchanged."""
    producer = producer_of(model, source)
    producer.outputs, _ = replace_index(producer.outputs, source, dropped)
    return rewire_consumers(model, source, dropped), []


def bypass_to_input(model, source, dropped):
    """Readers of the LRN output (ops, model outputs, signatures) read its input."""
    subgraph = model.subgraphs[SUBGRAPH]
    consumers = rewire_consumers(model, dropped, source)
    subgraph.outputs, _ = replace_index(subgraph.outputs, dropped, source)
    return consumers, retarget_signature_outputs(model, dropped, source)


def tamper_drop_lrn(model):
    found = ops_of(model, Op.LOCAL_RESPONSE_NORMALIZATION)
    if not found:
        raise NotApplicable("no LOCAL_RESPONSE_NORMALIZATION op")
    index, op = found[0]
    source, dropped = int(op.inputs[0]), int(op.outputs[0])
    outputs = model_outputs(model)
    if dropped in outputs and source in [int(v) for v in model.subgraphs[SUBGRAPH].inputs]:
        raise NotApplicable("the LRN op maps a model input straight to a model output")
    keep_output = dropped in outputs and source not in outputs and producer_of(model, source) is not None
    del model.subgraphs[SUBGRAPH].operators[index]
    if keep_output:
        consumers, signatures = bypass_into_output(model, source, dropped)
    else:
        consumers, signatures = bypass_to_input(model, source, dropped)
    return {"op_index": index, "op": "LOCAL_RESPONSE_NORMALIZATION", "input": name_of(model, source),
            "removed_output": name_of(model, dropped), "consumers": consumers,
            "model_output_kept": keep_output, "signature_outputs_rewired": signatures}


def retarget_signature_outputs(model, old, new):
    """Point signature outputs that named tensor `old` at tensor `new`; names kept."""
    renamed = []
    for signature in model.signatureDefs or []:
        if signature.subgraphIndex != SUBGRAPH:
            continue
        for entry in signature.outputs or []:
            if entry.tensorIndex == old:
                entry.tensorIndex = new
                renamed.append(entry.name.decode() if isinstance(entry.name, bytes) else entry.name)
    return renamed


def tamper_zero_bias(model):
    already_zero = []
    for i, op in ops_of(model, Op.CONV_2D):
        bias = input_at(op, 2)
        raw = constant_bytes(model, bias)
        if raw is None:
            continue
        if not raw.any():
            already_zero.append(i)
            continue
        bias = private_input(model, op, 2)
        write_bytes(model, bias, np.zeros_like(raw))
        return conv_report(model, i, op, bias=tensor_report(model, bias), skipped_zero_bias_ops=already_zero)
    if already_zero:
        raise NotApplicable(f"every CONV_2D constant bias is already zero (ops {already_zero})")
    raise NotApplicable("no CONV_2D with a constant bias")


def first_4d_input(model):
    for index in model.subgraphs[SUBGRAPH].inputs:
        if len(shape_of(model, int(index))) == 4:
            return int(index)
    raise NotApplicable("no 4-D subgraph input")


def add_transpose(model, source, perm):
    """New TRANSPOSE op (placed first) reading `source`; returns its output index."""
    perm_index = add_tensor(model, shape=[len(perm)], type=DType.INT32, hasRank=True,
                            name=f"{name_of(model, source)}/tamper_perm".encode())
    tensor(model, perm_index).buffer = add_buffer(model, np.frombuffer(np.array(perm, "<i4").tobytes(), np.uint8))
    out_index = add_tensor(model, template=tensor(model, source),
                           name=f"{name_of(model, source)}/tamper_transposed".encode())
    op = schema.OperatorT()
    op.opcodeIndex = opcode_index(model, Op.TRANSPOSE)
    op.inputs = [source, perm_index]
    op.outputs = [out_index]
    op.builtinOptionsType = schema.BuiltinOptions.TransposeOptions
    op.builtinOptions = schema.TransposeOptionsT()
    model.subgraphs[SUBGRAPH].operators.insert(0, op)
    return op, perm_index, out_index


def tamper_input_layout(model):
    source = first_4d_input(model)
    shape = shape_of(model, source)
    if shape[1] != shape[2] or shape[1] <= 0:
        raise NotApplicable(f"input {name_of(model, source)!r} shape {shape} is not square (H != W)")
    op, perm_index, out_index = add_transpose(model, source, [0, 2, 1, 3])
    consumers = rewire_consumers(model, source, out_index, skip=op)
    if not consumers:
        raise NotApplicable(f"input {name_of(model, source)!r} feeds no operator")
    return {"op_index": 0, "op": "TRANSPOSE", "perm": [0, 2, 1, 3], "input": tensor_report(model, source),
            "transposed": name_of(model, out_index), "perm_tensor": name_of(model, perm_index),
            "consumers": consumers}


def tamper_float16(model):
    changed, worst, seen = [], 0.0, set()
    for index, t in enumerate(model.subgraphs[SUBGRAPH].tensors):
        if t.buffer in seen or not is_float32_constant(model, index):
            continue
        seen.add(t.buffer)
        before = np.frombuffer(constant_bytes(model, index).tobytes(), dtype="<f4")
        after = before.astype(np.float16).astype(np.float32)
        if np.array_equal(before, after):
            continue
        model.buffers[t.buffer].data = np.frombuffer(after.astype("<f4").tobytes(), np.uint8).copy()
        changed.append(name_of(model, index))
        worst = max(worst, float(np.max(np.abs(before - after))))
    if not changed:
        raise NotApplicable("no float32 constant changes under float16 rounding")
    return {"buffers_changed": len(changed), "tensors": changed, "max_abs_change": worst}


KINDS = {
    "conv_weight": tamper_conv_weight,
    "swap_channels": tamper_swap_channels,
    "drop_lrn": tamper_drop_lrn,
    "zero_bias": tamper_zero_bias,
    "input_layout": tamper_input_layout,
    "float16": tamper_float16,
}


# ---------------------------------------------------------------- command line


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Break a .tflite model in one known way.")
    parser.add_argument("source", help="input .tflite")
    parser.add_argument("target", help="output .tflite (the tampered model)")
    parser.add_argument("--kind", required=True, choices=sorted(KINDS))
    parser.add_argument("--seed", type=int, default=0, help="recorded in the report; the kinds are deterministic")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    model = flatbuffer_utils.read_model(args.source)
    try:
        report = KINDS[args.kind](model)
    except NotApplicable as why:
        print(f"tamper_tflite: {args.kind} does not apply to {args.source}: {why}", file=sys.stderr)
        return EXIT_NOT_APPLICABLE
    flatbuffer_utils.write_model(model, args.target)
    report = {"kind": args.kind, "seed": args.seed, "subgraph": SUBGRAPH, "source": args.source,
              "target": args.target, **report}
    print(json.dumps(report, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
