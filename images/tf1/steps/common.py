# -*- coding: utf-8 -*-
"""Helpers shared by the TF1 stack's step scripts. Python 2.7 (the stack's sealed interpreter)."""
from __future__ import print_function

import json
import os
import platform
import sys

EX_DATAERR = 65  # the host reports this exit status as bad input (exit 2), with our last stderr line


def reject(message):
    print("ERROR: " + message, file=sys.stderr)
    sys.stderr.flush()
    sys.exit(EX_DATAERR)


def first_line(exc):
    text = str(exc).strip().splitlines()
    return "%s: %s" % (type(exc).__name__, text[0] if text else "")


def versions():
    import numpy
    found = {"python": platform.python_version(), "numpy": numpy.__version__}
    if "tensorflow" in sys.modules:
        found["tensorflow"] = sys.modules["tensorflow"].__version__
    return found


def _jsonable(value):
    import numpy as np
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def write_json(path, data):
    with open(path, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True, default=_jsonable)
        fh.write("\n")


def step_done(out, artifacts, **info):
    write_json(os.path.join(out, "step.json"), {"artifacts": artifacts, "versions": versions(), "info": info})


def truthy(value):
    return str(value).lower() in ("1", "true", "yes")
