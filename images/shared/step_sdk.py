# -*- coding: utf-8 -*-
"""The step SDK: what every step script and runner of every stack uses to talk to the host. Python 2.7 and 3
(the tf1 stack's sealed interpreter takes this same file through stack.json "shared_helpers").

The protocol (the host checks it, see orchestrator/protocol.py):
  - a step writes its artifacts and `step.json` ({"artifacts": [...], "versions": {...}, "info": {...}}) into
    --out and exits 0;
  - a runner (verification) also writes `run.json` (see runner_done);
  - bad input: reject(message) -> "ERROR: message" on stderr, exit 65; the host shows it as the user's error;
  - a converter failure: fail(message) -> "ERROR: message" on stderr, exit 70; the host reports the step failed.
"""
from __future__ import print_function

import json
import os
import platform
import sys

EX_DATAERR = 65  # bad input: the host reports the last stderr line as the user's error (exit 2)
EX_SOFTWARE = 70  # the converter failed: the host reports the step as failed (exit 3)

# libraries whose versions a step reports, when installed in its image
REPORTED = ("tensorflow", "keras", "tf_keras", "torch", "onnx", "onnxruntime", "onnxsim", "onnxscript", "onnx2tf",
            "tensorflowjs", "jax", "flax", "litert_torch", "litert_converter", "ai_edge_litert", "ai_edge_quantizer",
            "torchao")


def _stop(message, status):
    print("ERROR: " + message, file=sys.stderr)
    sys.stderr.flush()
    sys.exit(status)


def reject(message):
    """Stop: the input is unusable. One line, no traceback."""
    _stop(message, EX_DATAERR)


def fail(message):
    """Stop: the converter failed on an input it accepted. One line, no traceback."""
    _stop(message, EX_SOFTWARE)


def end_process(body):
    """Run body() as all a forked process does, then end that process at once (os._exit: nothing of the parent it
    was forked from runs on): status 0, SystemExit's status (its message on stderr when it is not a number), or 1
    with the traceback for any other exception, as the interpreter would exit."""
    import traceback

    code = 1
    try:
        body()
        code = 0
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


def oom_kills():
    """How many processes the kernel's out-of-memory killer has stopped in this container's memory cgroup (cgroup
    v2 or v1); None where neither file can be read."""
    for path in ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"):
        try:
            with open(path) as fh:
                for line in fh:
                    parts = line.split()
                    if len(parts) == 2 and parts[0] == "oom_kill":
                        return int(parts[1])
        except (IOError, OSError, ValueError):
            continue
    return None


def stop_if_killed(returncode, what, oom_before):
    """A child process of the step (a converter run in a process of its own) ended with `returncode`. When a
    signal killed it, the step stops at once, exiting 128+N as a killed container does, with one line naming what
    was killed and by what: a kill for memory would recur on every retry, so no remedy is tried after it. The host
    names the limit and the flag that raises it (runner.killed_reason). `oom_before`: oom_kills() before the
    child started."""
    if returncode is None or returncode >= 0:
        return
    import signal

    sig = -returncode
    names = dict((getattr(signal, n), n) for n in dir(signal) if n.startswith("SIG") and not n.startswith("SIG_"))
    after = oom_kills()
    if sig == signal.SIGKILL and after is not None and after > (oom_before or 0):
        cause = "the kernel's out-of-memory killer (the container's memory limit)"
    else:
        cause = names.get(sig, "signal %d" % sig)
    print("ERROR: %s was killed by %s" % (what, cause), file=sys.stderr)
    sys.stderr.flush()
    sys.exit(128 + sig)


def first_line(exc):
    text = str(exc).strip().splitlines()
    return ("%s: %s" % (type(exc).__name__, text[0] if text else "")).rstrip(": ")


def boolean(value):
    """A boolean option as the host writes it (true/false), also 1/0 and yes/no; for argparse `type=`."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes"):
        return True
    if text in ("0", "false", "no", "", "none"):
        return False
    reject("expected true or false, got '%s'" % value)


def _installed_version(name):
    """The version of the installed distribution `name`, or of its CPU-only build `name-cpu` (the images install
    tensorflow-cpu, which provides the same `tensorflow` package); None when neither is installed."""
    dist = name.replace("_", "-")
    for candidate in (dist, dist + "-cpu"):
        version = _distribution_version(candidate)
        if version:
            return version
    return None


def _distribution_version(dist):
    try:
        from importlib import metadata
    except ImportError:  # Python 2.7: pkg_resources
        try:
            import pkg_resources

            return pkg_resources.get_distribution(dist).version
        except Exception:
            return None
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def versions():
    """Versions of the libraries that matter, as installed in this image (imported or not: a step may run its
    converter in a child process)."""
    import numpy

    found = {"python": platform.python_version(), "numpy": numpy.__version__}
    for name in REPORTED:
        module = sys.modules.get(name)
        version = getattr(module, "__version__", None) if module is not None else None
        if not isinstance(version, str):
            version = _installed_version(name) if sys.version_info[0] >= 3 or module is not None else None
        if version:
            found[name] = version
    return found


def _jsonable(value):
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def write_json(path, data):
    with open(path, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True, default=_jsonable)
        fh.write("\n")


def step_done(out, artifacts, **info):
    """The last thing a step does: step.json with its artifacts (the main one first), versions and facts."""
    write_json(os.path.join(out, "step.json"), {"artifacts": list(artifacts), "versions": versions(), "info": info})


def runner_done(out, info, artifacts=("outputs.npz",)):
    """The last thing a verification runner does: run.json (`info`: inputs, outputs, samples, logits, and for the
    reference the input groups and the perturbation) and step.json."""
    write_json(os.path.join(out, "run.json"), info)
    step_done(out, list(artifacts), **info)
