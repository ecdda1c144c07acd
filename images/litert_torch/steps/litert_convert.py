"""PyTorch -> TFLite with LiteRT Torch (litert_torch.convert: torch.export, StableHLO, the LiteRT converter; no ONNX
and no TensorFlow).

    litert_convert.py --input MODEL --out DIR --input_shape 1,3,224,224[:...] [--model_code FILE.py:Class]
                      [--model_args JSON] [--keep_nchw all|NAMES] [--quantize none|dynamic|int8|int8-full]
                      [--calibration FILE.npy|FILE.npz|DIR] [--quantizer pt2e|ai_edge_quantizer]
                      [--input_names a,b] [--output_names y]
Writes DIR/model.tflite and DIR/step.json. MODEL is read as the torch stack reads it (torch_models.load): an
ExportedProgram (.pt2), a state_dict with --model_code, or a pickled module with --model_code. TorchScript is
refused (exit 65): torch.export, which litert-torch starts from, cannot trace a ScriptModule.

Layout, as the onnx2tf route makes it: inputs and outputs of rank 3 to 5 become channels-last (NCHW -> NHWC) by
litert_torch.to_channel_last_io, unless --keep_nchw all (every tensor kept as torch has it) or --keep_nchw a,b
(those inputs kept). step.json's "layout" names what was done per tensor, in the words the onnx2tf stack's TFLite
runner records ("NCHW->NHWC", "same"), so that runner feeds the reference's NCHW inputs to this model.

Quantization, by --quantizer (auto: pt2e for dynamic and int8, ai_edge_quantizer for int8-full):
  pt2e               litert-torch's documented post-training flow: its PT2EQuantizer (symmetric, per channel),
                     torchao's prepare_pt2e / convert_pt2e, then litert_torch.convert(quant_config=QuantConfig(...)).
                     dynamic: int8 weights, activations quantized at run time. int8: int8 weights and activations
                     (observed on --calibration) for the ops the quantizer annotates (conv, linear, add, pools);
                     the LiteRT converter folds the first QUANTIZE into the interface, so an input that feeds a
                     quantized op becomes int8, while an output of a float op (e.g. softmax) stays float.
  ai_edge_quantizer  convert to float, then quantize the .tflite with ai-edge-quantizer's recipes:
                     dynamic_wi8_afp32, or static_wi8_ai8 calibrated on --calibration (every op it supports in
                     int8, softmax included; int8 input and output).
With LITERT_STEP_IMPORTS=FILE in its environment the step appends the top-level modules it imported to FILE (how
requirements.exclude was checked; re-check it after an upgrade).

int8-full must end with an int8 input and output: what the quantizer left float at the interface is made int8 by
LiteRT's modify_model_interface; where that cannot be done the step fails, naming the float tensors.
"""

import os
import sys
import tempfile
import time

# stack.json's environment turns off litert-torch's progress tree (LITERT_TORCH_SHOW_PROGRESS) and ai-edge-quantizer's
# progress bar (TQDM_DISABLE): set before the warm worker imports them

import numpy as np  # noqa: E402
import torch  # noqa: E402

import torch_models  # noqa: E402
import verify_io  # noqa: E402
from common import boolean, csv, fail, first_line, reject, step_done, versions  # noqa: E402

MODES = ("none", "dynamic", "int8", "int8-full")
QUANTIZERS = ("auto", "pt2e", "ai_edge_quantizer")
TFLITE_INT8 = 9  # tflite schema TensorType.INT8 (modify_model_interface takes the schema's numbers)
USE_ONNX2TF = "use --converter onnx2tf (torch.onnx's TorchScript exporter, then onnx2tf)"


def to_last(rank):
    """NCHW -> NHWC permutation for a tensor of this rank (channels from axis 1 to the end)."""
    return (0,) + tuple(range(2, rank)) + (1,)


def channels_last(rank):
    return 3 <= rank <= 5


class Flat(torch.nn.Module):
    """The user's model with its outputs flattened into a tuple (tuples, lists and dicts, in order)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, *args):
        return tuple(torch_models.flat_outputs(self.inner(*args)))


class Named(torch.nn.Module):
    """Keyword inputs and a dict of outputs: litert-torch names the .tflite signature's tensors after them
    (input_0, ..., output_0, ... as the torch stack's ONNX export and its runner name them)."""

    def __init__(self, inner, input_names, output_names):
        super().__init__()
        self.inner = inner
        self.input_names = list(input_names)
        self.output_names = list(output_names)

    def forward(self, **inputs):
        outputs = self.inner(*[inputs[n] for n in self.input_names])
        return dict(zip(self.output_names, outputs))


def parse_keep(text, names):
    keep = csv(text)
    if "all" in keep:
        return "all", set(names)
    unknown = [k for k in keep if k not in names]
    if unknown:
        reject(f"--keep_nchw names {', '.join(unknown)}; the inputs are {', '.join(names)} (or: all)")
    return keep, set(keep)


def calibration_samples(path, input_names, arrays, converted):
    """[{input name: one batch in the converted layout}] from --calibration (verify_io reads .npy, .npz and folders
    of .npy; NCHW or channels-last samples; at most 32)."""
    specs = [verify_io.InputSpec(n, a.shape, "float32") for n, a in zip(input_names, arrays)]
    try:
        batches = verify_io.given_batches(specs, path, "--calibration")
    except verify_io.InputError as exc:
        reject(str(exc))
    count = len(next(iter(batches.values())))
    feeds = []
    for k in range(count):
        feed = {}
        for i, name in enumerate(input_names):
            sample = batches[name][k]
            feed[name] = np.ascontiguousarray(sample.transpose(to_last(sample.ndim)) if i in converted else sample)
        feeds.append(feed)
    return feeds


def tensors(feed):
    return {n: torch.from_numpy(np.ascontiguousarray(a)) for n, a in feed.items()}


def pt2e_convert(litert_torch, module, example, mode, calibration):
    """litert-torch's documented PT2E flow: export, prepare_pt2e, observe, convert_pt2e, convert with QuantConfig."""
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    dynamic = mode == "dynamic"
    quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True,
                                                                             is_dynamic=dynamic))
    try:
        graph = torch.export.export(module, (), tensors(example)).module()
        graph = prepare_pt2e(graph, quantizer)
        with torch.no_grad():
            for feed in ([example] if dynamic else calibration):
                graph(**tensors(feed))
        graph = convert_pt2e(graph, fold_quantize=False)
    except Exception as exc:
        fail(f"PT2E quantization ({mode}) failed: {first_line(exc)}")
    edge = litert_torch.convert(graph, sample_kwargs=tensors(example), quant_config=QuantConfig(pt2e_quantizer=quantizer))
    scheme = ("int8 weights per channel, dynamic int8 activations" if dynamic
              else "int8 weights per channel, int8 activations (histogram observers)")
    return edge, {"method": "pt2e", "api": "litert_torch.quantize.pt2e_quantizer.PT2EQuantizer + torchao prepare_pt2e/"
                  "convert_pt2e + litert_torch.convert(quant_config=QuantConfig(pt2e_quantizer=...))",
                  "scheme": scheme}


def aeq_quantize(float_bytes, mode, calibration):
    """ai-edge-quantizer on the float .tflite: dynamic_wi8_afp32, or static_wi8_ai8 calibrated."""
    from ai_edge_quantizer import quantizer as aeq
    from ai_edge_quantizer import recipe

    name = "dynamic_wi8_afp32" if mode == "dynamic" else "static_wi8_ai8"
    try:
        qt = aeq.Quantizer(bytearray(float_bytes), getattr(recipe, name)())
        result = None
        if qt.need_calibration:
            result = qt.calibrate({"serving_default": calibration})
        quantized = qt.quantize(result, enable_progress_report=False).quantized_model
    except Exception as exc:
        fail(f"ai-edge-quantizer ({name}) failed: {first_line(exc)}")
    return bytes(quantized), {"method": "ai_edge_quantizer", "api": f"ai_edge_quantizer.Quantizer + recipe.{name}()",
                              "recipe": name}


def float_interface(path):
    """The names of the model's inputs and outputs that are not int8."""
    from tflite_runtime import TFLiteModel

    model = TFLiteModel(path, logits=False)
    return [d["name"] for d in model.in_details + model.out_details if np.dtype(d["dtype"]) != np.int8]


def int8_interface(path):
    """An int8 model's float inputs/outputs made int8 (the QUANTIZE after each input and the DEQUANTIZE before each
    output removed) by LiteRT's modify_model_interface (TF's tool). Returns whether it changed anything."""
    if not float_interface(path):
        return False
    from ai_edge_litert import _pywrap_modify_model_interface as mmi

    fd, tmp = tempfile.mkstemp(suffix=".tflite", dir=os.path.dirname(path))
    os.close(fd)
    try:
        status = mmi.modify_model_interface(path, tmp, TFLITE_INT8, TFLITE_INT8)
        left = float_interface(tmp) if status == 0 else None
    except Exception as exc:
        status, left = first_line(exc), None
    if status != 0 or left:
        os.unlink(tmp)
        why = f"{', '.join(left)} stay float" if left else f"modify_model_interface: {status}"
        fail(f"int8-full: the model's interface cannot be made int8 ({why}: an input that does not feed a "
             f"QUANTIZE op or an output not made by a DEQUANTIZE op)")
    os.replace(tmp, path)
    return True


def main():
    p = torch_models.arguments()
    p.add_argument("--keep_nchw")
    p.add_argument("--quantize", default="none", choices=MODES)
    p.add_argument("--calibration")
    p.add_argument("--quantizer", default="auto", choices=QUANTIZERS)
    p.add_argument("--allow_flex_ops", default="false")
    args = p.parse_args()

    name = os.path.basename(args.input)
    if torch_models.kind_of(args.input) == "torchscript":
        reject(f"{name}: a TorchScript model, which litert-torch cannot convert (torch.export cannot trace a "
               f"ScriptModule); {USE_ONNX2TF}, or give the model as an ExportedProgram (.pt2), a state_dict or "
               f"a pickled module with --model_code")
    if args.quantize in ("int8", "int8-full") and not args.calibration:
        reject(f"--quantize {args.quantize} needs --calibration (representative inputs: .npy, .npz or a folder "
               f"of .npy)")
    model, kind, arrays, outputs, input_names, output_names = torch_models.prepared(args)
    keep, kept = parse_keep(args.keep_nchw, input_names)
    in_last = [i for i, a in enumerate(arrays) if channels_last(a.ndim) and input_names[i] not in kept]
    out_last = [] if keep == "all" else [i for i, o in enumerate(outputs) if channels_last(o.ndim)]
    layout = {"input": {n: ("NCHW->NHWC" if i in in_last else "same") for i, n in enumerate(input_names)},
              "output": {n: ("NCHW->NHWC" if i in out_last else "same") for i, n in enumerate(output_names)}}
    example = {n: (a.transpose(to_last(a.ndim)) if i in in_last else a) for i, (n, a) in enumerate(zip(input_names,
                                                                                                      arrays))}
    calibration = None
    if args.quantize in ("int8", "int8-full"):
        calibration = calibration_samples(args.calibration, input_names, arrays, in_last)

    quantizer = args.quantizer
    if quantizer == "auto":
        quantizer = "ai_edge_quantizer" if args.quantize == "int8-full" else "pt2e"

    import litert_torch

    module = Named(litert_torch.to_channel_last_io(Flat(model), args=in_last, outputs=out_last),
                   input_names, output_names)
    for wrapper in (module, module.inner, module.inner.wrapped):  # in eval mode, without touching the user's
        wrapper.training = False  # model (an ExportedProgram's module refuses train() and eval())
    target = os.path.join(args.out, "model.tflite")
    quant = {"quantize": args.quantize}
    start = time.time()
    try:
        if args.quantize != "none" and quantizer == "pt2e":
            edge, how = pt2e_convert(litert_torch, module, example, args.quantize, calibration)
        else:
            edge = litert_torch.convert(module, sample_kwargs=tensors(example))
        edge.export(target)
    except SystemExit:
        raise
    except Exception as exc:
        fail(f"litert_torch.convert failed on {name}: {first_line(exc)} ({USE_ONNX2TF} if it cannot be fixed)")
    if args.quantize != "none" and quantizer == "ai_edge_quantizer":
        with open(target, "rb") as fh:
            quantized, how = aeq_quantize(fh.read(), args.quantize, calibration)
        with open(target, "wb") as fh:
            fh.write(quantized)
    if args.quantize != "none":
        quant.update(how, calibration_samples=len(calibration) if calibration else 0)
    if args.quantize == "int8-full":
        quant["interface_made_int8"] = int8_interface(target)
    seconds = time.time() - start

    from tflite_runtime import FLEX_HINT, TFLiteModel, op_set

    result = TFLiteModel(target, logits=False)
    counts = result.op_counts()
    flex = sorted(op_set(counts)["flex"])
    if flex and not boolean(args.allow_flex_ops):
        fail(f"{name}: LiteRT Torch left Flex (TF Select) ops ({', '.join(flex)}), which a plain TFLite/LiteRT "
             f"interpreter cannot run; {FLEX_HINT}")
    got = {} if flex and not result.flex_delegate else dict(result.run({s.name: example[s.name]
                                                                        for s in result.inputs}))
    expected = {n: (o.transpose(to_last(o.ndim)) if i in out_last else o) for i, (n, o) in enumerate(zip(output_names,
                                                                                                        outputs))}
    example_err = {n: float(np.max(np.abs(np.asarray(got[n], np.float64) - expected[n])))
                   for n in output_names if n in got and np.shape(got[n]) == expected[n].shape}
    found = versions()
    converter = {"name": "litert-torch", "version": found.get("litert_torch")}
    for extra in ("litert_converter", "ai_edge_litert", "ai_edge_quantizer", "torchao"):
        if found.get(extra):
            converter[extra.replace("_", "-")] = found[extra]
    step_done(args.out, ["model.tflite"], converter=converter, source_kind=kind, keep_nchw=keep, layout=layout,
              torch_inputs=[{"name": n, "shape": list(a.shape)} for n, a in zip(input_names, arrays)],
              torch_outputs=[{"name": n, "shape": list(o.shape)} for n, o in zip(output_names, outputs)],
              tflite_inputs=[s.to_json() for s in result.inputs],
              tflite_outputs=[{"name": d["name"], "shape": list(d["shape"]), "dtype": np.dtype(d["dtype"]).name}
                              for d in result.out_details],
              io_quantization=result.details(),
              io_types={"inputs": [np.dtype(d["dtype"]).name for d in result.in_details],
                        "outputs": [np.dtype(d["dtype"]).name for d in result.out_details]},
              transpose_ops=counts.get("TRANSPOSE", 0), ops=counts, op_set=op_set(counts),
              size_bytes=os.path.getsize(target),
              convert_seconds=round(seconds, 2), example_max_abs_err=example_err, **quant)


if __name__ == "__main__":
    try:
        main()
    finally:
        if os.environ.get("LITERT_STEP_IMPORTS"):
            with open(os.environ["LITERT_STEP_IMPORTS"], "a") as fh:
                fh.write(" ".join(sorted({m.split(".")[0] for m in sys.modules})) + "\n")
