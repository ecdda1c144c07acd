"""Run a model on inputs for verification (TF2 stack): Keras, SavedModels, frozen graphs, TF Hub modules, TFLite.

    run_model.py --format F --input MODEL --out DIR (--plan JSON | --inputs REF_DIR/inputs.json) [format options]
See common.verification_run for what it writes.
"""

import models
from common import runner_arguments, verification_run


def main():
    args = runner_arguments(options=("signature_name", "saved_model_tags", "input_arrays", "output_arrays",
                                     "input_shapes", "max_detections", "output_node_names"))
    model = models.load(args.format, args.input, args)
    info = {}
    if hasattr(model, "details"):
        info["tensors"] = model.details()
    if hasattr(model, "op_counts"):
        info["transpose_ops"] = model.op_counts().get("TRANSPOSE", 0)
    verification_run(model, args, info)


if __name__ == "__main__":
    main()
