"""One onnx2tf conversion, in a process of its own (onnx2tf keeps global state and may sys.exit on errors): either a
fresh interpreter,

    onnx2tf_attempt.py PARAMS.json

or a child forked from the step's warm process (Forked), which pays no second import of TensorFlow and onnx2tf.
PARAMS.json holds onnx2tf.convert keyword arguments; calibration entries carry mean/std as lists.
"""

import json
import os
import sys
import traceback

import numpy as np


def convert(params):
    cind = params.get("custom_input_op_name_np_data_path")
    if cind:
        params = dict(params, custom_input_op_name_np_data_path=[
            [n, p, np.asarray(m, np.float32), np.asarray(s, np.float32)] for n, p, m, s in cind])
    import onnx2tf

    onnx2tf.convert(**params)


class Forked:
    """convert(params) in a child forked from this process, its stdout and stderr into `log_path`, while the parent
    goes on (the step computes its reference meanwhile). Fork only where no TensorFlow or TFLite runtime has run in
    this process yet: a fork carries no thread but the caller's."""

    def __init__(self, params, log_path, cwd):
        import onnx2tf  # noqa: F401  imported once here (a warm worker has it already), not in each child

        sys.stdout.flush()
        sys.stderr.flush()
        self.pid = os.fork()
        if self.pid == 0:
            code = 1
            try:
                fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                os.close(fd)
                os.chdir(cwd)
                convert(params)
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
            except BaseException:
                traceback.print_exc()
            finally:  # never back into the parent's code: its log file holds all the child said
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)

    def wait(self):
        """Its exit status as subprocess gives it: -N when signal N killed it."""
        _, status = os.waitpid(self.pid, 0)
        return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)

    def kill(self):
        import signal

        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except OSError:
            pass


def main():
    with open(sys.argv[1]) as fh:
        convert(json.load(fh))


if __name__ == "__main__":
    main()
