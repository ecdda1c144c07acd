"""Run an ONNX model (onnxruntime) or an onnx2tf conversion (TFLite, SavedModel) for verification.

    run_model.py --format onnx|tflite|tf_saved_model --input MODEL --out DIR
                 (--make-inputs [--seed N] [--sample_input FILE] | --inputs REF_DIR/inputs.json)
As the reference (--make-inputs) it writes inputs.npz/.json. As the result (--inputs) it feeds the reference's
inputs transposed to the converted model's layout (NCHW -> NHWC) and writes its outputs transposed back and named
as the reference's (read from REF_DIR/outputs.npz), recording the layout in run.json.
"""

import os

import numpy as np

import runtimes
from common import load_array_file, reject, runner_arguments, save_json_arrays, step_done, write_json


def main():
    args = runner_arguments(formats=sorted(runtimes.LOADERS))

    model = runtimes.load(args.format, args.input)
    info = {}
    if args.make_inputs:
        if args.sample_input:
            given = load_array_file(args.sample_input)
            arrays = list(given.values()) if isinstance(given, dict) else given
            if len(arrays) != len(model.inputs):
                reject(f"{args.sample_input}: holds {len(arrays)} array(s); the model has {len(model.inputs)} input(s)")
            feeds = {}
            for spec, arr in zip(model.inputs, arrays):
                arr = arr[None] if not spec.fits(arr.shape) and spec.fits((1,) + arr.shape) else arr
                if not spec.fits(arr.shape):
                    reject(f"{args.sample_input}: array of shape {list(arr.shape)} does not fit input "
                           f"'{spec.name}' {spec.shape}")
                feeds[spec.name] = arr.astype(spec.dtype)
            origin = {"kind": "sample", "file": os.path.basename(args.sample_input)}
        else:
            feeds = runtimes.random_feeds(model.inputs, args.seed)
            origin = {"kind": "random", "seed": args.seed, "float_range": [-1.0, 1.0], "int_range": [0, 10]}
        np.savez(os.path.join(args.out, "inputs.npz"), **feeds)
        save_json_arrays(os.path.join(args.out, "inputs.json"), feeds)
        outputs = dict(model.run(feeds))
    else:
        given = load_array_file(args.inputs)
        feeds, info["input_layout"] = runtimes.adapt_inputs(model.inputs, given)
        origin = {"kind": "given"}
        ref_dir = os.path.dirname(args.inputs)
        ref_file = os.path.join(ref_dir, "outputs.npz")
        if os.path.exists(ref_file):
            outputs, info["output_layout"] = runtimes.adapt_outputs(model.run(feeds), load_array_file(ref_file))
        else:
            outputs = dict(model.run(feeds))
    np.savez(os.path.join(args.out, "outputs.npz"), **outputs)
    info.update(
        inputs=[dict(s.to_json(), fed_shape=list(feeds[s.name].shape)) for s in model.inputs],
        outputs=[{"name": n, "shape": list(np.shape(v)), "dtype": np.asarray(v).dtype.name} for n, v in outputs.items()],
        origin=origin,
    )
    if args.format == "tflite":
        scales = model.quant_scales()
        if scales:  # named as the reference's outputs, which the compare step pairs with
            names = runtimes.match(list(scales), list(outputs)) or {}
            info["tensors"] = {"quant_scales": {ref: scales[got] for ref, got in names.items()}}
        info["transpose_ops"] = model.op_counts().get("TRANSPOSE", 0)
    write_json(os.path.join(args.out, "run.json"), info)
    step_done(args.out, ["outputs.npz"], **info)


if __name__ == "__main__":
    main()
