"""One onnx2tf conversion in a process of its own: onnx2tf keeps global state and may sys.exit on errors, and an
attempt killed for memory must not take the step with it.

The process is forked, not started afresh (which imported TensorFlow and onnx2tf again, about 7 s an attempt), and
not forked from the step as it runs either: the step's reference runs onnxruntime meanwhile, and a child forked
from it inherited onnxruntime's state mid-use (it deadlocked an int8 calibration's conversion). So the step makes an
AttemptForker before it does anything else: a process that imports onnx2tf once and forks a child of itself for
each attempt, a copy of the step as it was before any of its work. Inside an attempt, onnx2tf's own `onnxsim`
subprocesses are forks of the attempt too (`forking`), and the TFLite converter's saves of onnx2tf's Keras model
are quick ones (keras_savedmodel.py).

    onnx2tf_attempt.py PARAMS.json      (the same conversion in a fresh interpreter, by hand)
PARAMS.json holds onnx2tf.convert keyword arguments; calibration entries carry mean/std as lists.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile

import numpy as np

import keras_savedmodel
from common import end_process, output_to


def convert(params_file):
    with open(params_file) as fh:
        params = json.load(fh)
    cind = params.get("custom_input_op_name_np_data_path")
    if cind:
        params["custom_input_op_name_np_data_path"] = [[n, p, np.asarray(m, np.float32), np.asarray(s, np.float32)]
                                                       for n, p, m, s in cind]
    import onnx2tf

    onnxsim_main = _onnxsim_main()
    if onnxsim_main is not None:  # this process is the attempt's own (a fork): the change goes with it
        subprocess.check_output = forking(subprocess.check_output, "onnxsim", onnxsim_main)
    keras_savedmodel.install()  # onnx2tf's TFLite conversions (float32, float16) save its Keras model quickly
    onnx2tf.convert(**params)


def _onnxsim_main():
    try:
        from onnxsim import main
    except Exception:  # onnx2tf's own `onnxsim` call then fails as it would, and onnx2tf goes on without it
        return None
    return main


def forking(check_output, command, main):
    """subprocess.check_output, except that `COMMAND ARGS...` runs main() (that command's Python entry point) in
    a fork of this process with sys.argv set, not in a fresh interpreter. onnx2tf runs `onnxsim IN OUT` three times
    a conversion in a process of its own; each fresh one imported onnx and onnxsim again, about 0.3 s. A fork is
    still a process of its own (its crash, exit or memory is not this one's), and what it prints and its exit
    status come back as check_output gives them: stdout returned, CalledProcessError when it fails."""
    def check_output_forking(args, *rest, **kwargs):
        if rest or not isinstance(args, (list, tuple)) or not args or args[0] != command:
            return check_output(args, *rest, **kwargs)
        code, out, err = run_main_forked(main, [str(a) for a in args])
        text = kwargs.get("text") or kwargs.get("universal_newlines") or kwargs.get("encoding")
        if text:
            out, err = out.decode(kwargs.get("encoding") or "utf-8", "replace"), err.decode("utf-8", "replace")
        if code != 0:
            raise subprocess.CalledProcessError(code, list(args), output=out, stderr=err)
        return out

    return check_output_forking


def run_main_forked(main, argv):
    """(exit status, stdout bytes, stderr bytes) of main() run in a fork with sys.argv = argv (-N for signal N)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            def body():
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                sys.stdout, sys.stderr = open(1, "w", closefd=False), open(2, "w", closefd=False)
                sys.argv = argv
                sys.exit(main())

            end_process(body)
        _, status = os.waitpid(pid, 0)
        out.seek(0)
        err.seek(0)
        return os.waitstatus_to_exitcode(status), out.read(), err.read()


class Attempt:
    """A running attempt, as subprocess.Popen gives one: wait() -> its exit status (-N for signal N), kill()."""

    def __init__(self, forker, pid):
        self.forker, self.pid, self.returncode = forker, pid, None

    def wait(self):
        if self.returncode is None:
            line = self.forker.replies.readline()
            self.returncode = json.loads(line)["status"] if line else -signal.SIGKILL  # the forker itself died
        return self.returncode

    def kill(self):
        try:
            os.kill(self.pid, signal.SIGKILL)
        except OSError:
            pass


class AttemptForker:
    """The process that forks the attempts (module docstring). It stays in the step's process group, so whatever
    ends the step ends it and its attempts; it exits when the step closes its end of the pipe."""

    def __init__(self):
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            os.close(req_w)
            os.close(rep_r)
            code = 0
            try:
                self._serve(os.fdopen(req_r), os.fdopen(rep_w, "w"))
            except BaseException:
                code = 1
            os._exit(code)
        os.close(req_r)
        os.close(rep_w)
        self.pid, self.requests, self.replies = pid, os.fdopen(req_w, "w"), os.fdopen(rep_r)

    def start(self, params_file, log_path, cwd):
        """Start one attempt: onnx2tf.convert with PARAMS_FILE's arguments, its output into LOG_PATH."""
        self.requests.write(json.dumps({"params": params_file, "log": log_path, "cwd": cwd}) + "\n")
        self.requests.flush()
        return Attempt(self, json.loads(self.replies.readline())["pid"])

    def close(self):
        for stream in (self.requests, self.replies):
            try:
                stream.close()
            except OSError:
                pass
        try:
            os.waitpid(self.pid, 0)
        except OSError:
            pass

    @staticmethod
    def _serve(requests, replies):
        try:
            import onnx2tf  # noqa: F401  (once, here: every attempt forked after this has it)
            import onnxsim  # noqa: F401  (and onnx2tf's `onnxsim` calls, forked from the attempt: `forking`)
        except Exception:  # the attempt says why, in its own log
            pass
        for line in requests:
            req = json.loads(line)
            pid = os.fork()
            if pid == 0:
                AttemptForker._attempt(req)
            replies.write(json.dumps({"pid": pid}) + "\n")
            replies.flush()
            _, status = os.waitpid(pid, 0)
            code = os.waitstatus_to_exitcode(status)  # -N for signal N, as Popen says it
            replies.write(json.dumps({"status": code}) + "\n")
            replies.flush()

    @staticmethod
    def _attempt(req):
        """In the attempt's process: run it and never return."""
        def attempt():
            output_to(req["log"])
            os.chdir(req["cwd"])
            convert(req["params"])

        end_process(attempt)

if __name__ == "__main__":
    convert(sys.argv[1])
