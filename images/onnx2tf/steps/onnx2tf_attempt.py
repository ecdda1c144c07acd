"""One onnx2tf conversion, in a fresh interpreter of its own (onnx2tf keeps global state and may sys.exit on
errors; and a child forked from the step would inherit onnxruntime's state mid-use from the step's reference, which
deadlocked an int8 calibration's conversion).

    onnx2tf_attempt.py PARAMS.json
PARAMS.json holds onnx2tf.convert keyword arguments; calibration entries carry mean/std as lists.
"""

import json
import sys

import numpy as np


def main():
    with open(sys.argv[1]) as fh:
        params = json.load(fh)
    cind = params.get("custom_input_op_name_np_data_path")
    if cind:
        params["custom_input_op_name_np_data_path"] = [[n, p, np.asarray(m, np.float32), np.asarray(s, np.float32)]
                                                       for n, p, m, s in cind]
    import onnx2tf

    onnx2tf.convert(**params)


if __name__ == "__main__":
    main()
