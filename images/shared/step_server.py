"""A stack's warm worker: imports the stack's heavy libraries once, then runs each step it is sent in a child
forked from that warm process, so a conversion pays TensorFlow's (or torch's) import once per stack, not once per
step. The host (orchestrator/workers.py) starts one container running this per stack, with the container's usual
hardening, and talks to it through files in a control folder that both see:

    CONTROL/ID.req    {"argv": [interpreter, script, args...], "timeout": seconds, "scratch": its working folder}
                      (written by the host, renamed into place so it is never read half-written; without
                      "scratch", the server makes one under --scratch)
    CONTROL/ID.out    the step's stdout          CONTROL/ID.err    its stderr (the child's fds 1 and 2)
    CONTROL/ID.done   {"exit_code", "signal", "timed_out", "seconds", "oom_killed"}   (renamed into place)
    CONTROL/ID.kill   (by the host) stop that step now: it is killed with its process group, as at its timeout
    CONTROL/ready     written once the libraries are imported
    CONTROL/alive     touched by the host every few seconds: when it is older than --heartbeat seconds, the host
                      is gone (killed, say), and the worker kills its steps and exits instead of lingering

Each step runs as it would as a container's main process: `python SCRIPT ARGS` (runpy, as __main__), in its own
process group, with a fresh empty working folder that is also its HOME and TMPDIR (removed when it ends: by the host,
which made it, or by the server). A step
past its timeout is killed with its whole process group. Exit codes follow the container convention: a step killed
by signal N exits 128+N (137 for the memory limit's SIGKILL).

Python 2.7 (the tf1 stack) and 3 alike.
"""

from __future__ import print_function

import argparse
import errno
import json
import os
import runpy
import shutil
import signal
import sys
import tempfile
import time

from step_sdk import end_process, oom_kills

POLL_SECONDS = 0.01


def write_json(path, doc):
    """Write a JSON file under its final name in one rename (the host never reads a partial one)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(doc, fh)
    os.rename(tmp, path)


def preload(names, skip=()):
    """Import `names` once. Modules in `skip` are kept out meanwhile: a preloaded library that imports one only if
    it can (TensorFlow imports JAX when it is installed, for an API no step uses) goes without it, and a step that
    needs it imports it itself, since it is importable again afterwards."""
    hidden = [name for name in skip if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # `import name` raises ImportError while this stands
    try:
        for name in names:
            try:
                __import__(name)
            except Exception as exc:  # the step that needs it fails on its own, with its own message
                print("step_server: could not preload %s: %s" % (name, exc), file=sys.stderr)
    finally:
        for name in hidden:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


def run_step(req, rid, control, scratch):
    """In the forked child: become the step's process and never return."""
    def step():
        os.setpgid(0, 0)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        for fd, suffix in ((1, ".out"), (2, ".err")):
            target = os.open(os.path.join(control, rid + suffix), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(target, fd)
            os.close(target)
        os.chdir(scratch)
        os.environ["HOME"] = os.environ["TMPDIR"] = scratch
        tempfile.tempdir = scratch
        script = req["argv"][1]
        sys.argv = list(req["argv"][1:])
        sys.path[0] = os.path.dirname(script)
        runpy.run_path(script, run_name="__main__")

    end_process(step)


class Server(object):
    def __init__(self, control, scratch_root):
        self.control, self.scratch_root = control, scratch_root
        self.running = {}  # pid -> {"id", "started", "deadline", "scratch", "timed_out"}

    def take_requests(self):
        for name in sorted(os.listdir(self.control)):
            if not name.endswith(".req"):
                continue
            rid, path = name[:-len(".req")], os.path.join(self.control, name)
            try:
                with open(path) as fh:
                    req = json.load(fh)
                os.rename(path, os.path.join(self.control, rid + ".taken"))
            except (IOError, OSError, ValueError) as exc:
                write_json(os.path.join(self.control, rid + ".done"),
                           {"exit_code": 1, "signal": 0, "timed_out": False, "seconds": 0.0,
                            "error": "unreadable request: %s" % exc})
                continue
            # the step's own working folder, made (and removed) by the host like a fresh container's /scratch; else
            # one of the server's, removed when the step ends
            scratch = req.get("scratch") or tempfile.mkdtemp(prefix="step-", dir=self.scratch_root)
            started = time.time()
            sys.stdout.flush()
            sys.stderr.flush()  # nothing the server printed may reach the step's output twice
            pid = os.fork()
            if pid == 0:
                run_step(req, rid, self.control, scratch)
            try:  # its own process group, made here too: a kill (timeout, CONTROL/ID.kill) that comes before the
                os.setpgid(pid, pid)  # child has made it would otherwise find no group, and the step would run on
            except OSError:  # it made it already, or has ended
                pass
            self.running[pid] = {"id": rid, "started": started, "timed_out": False,
                                 "scratch": None if req.get("scratch") else scratch,
                                 "oom_before": oom_kills(),
                                 "deadline": started + float(req.get("timeout") or 3600.0)}

    def reap(self):
        while self.running:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except OSError as exc:
                if exc.errno == errno.ECHILD:
                    return
                raise
            if pid == 0:
                return
            step = self.running.pop(pid, None)
            if step is None:  # an orphaned grandchild this process (the container's pid 1) inherited
                continue
            try:  # what the step left running in its process group (a fork bomb's survivors) ends with it
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
            sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
            code = 128 + sig if sig else os.WEXITSTATUS(status)
            if step["scratch"]:
                shutil.rmtree(step["scratch"], ignore_errors=True)
            # the memory limit's kill: SIGKILL, and the container's cgroup counted one more out-of-memory kill
            oom = sig == signal.SIGKILL and (oom_kills() or 0) > (step["oom_before"] or 0)
            write_json(os.path.join(self.control, step["id"] + ".done"),
                       {"exit_code": code, "signal": sig, "timed_out": step["timed_out"], "oom_killed": oom,
                        "seconds": round(time.time() - step["started"], 3)})

    def enforce_timeouts(self):
        """Kill the steps past their timeout, and those the host asked to stop (CONTROL/ID.kill): the other steps
        this server runs side by side go on."""
        now = time.time()
        for pid, step in self.running.items():
            if step.get("killed"):
                continue
            told = os.path.exists(os.path.join(self.control, step["id"] + ".kill"))
            if told or now > step["deadline"]:
                step["killed"] = True
                step["timed_out"] = not told
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    pass

    def host_gone(self, heartbeat):
        try:
            return time.time() - os.stat(os.path.join(self.control, "alive")).st_mtime > heartbeat
        except OSError:
            return True

    def serve(self, heartbeat):
        checked = 0.0
        while True:
            self.take_requests()
            self.reap()
            self.enforce_timeouts()
            if time.time() - checked > 1.0:
                checked = time.time()
                if self.host_gone(heartbeat):
                    for pid in list(self.running):
                        try:
                            os.killpg(pid, signal.SIGKILL)
                        except OSError:
                            pass
                    print("step_server: the host stopped sending heartbeats; exiting", file=sys.stderr)
                    os._exit(0)
            time.sleep(POLL_SECONDS)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--control", required=True, help="the folder requests and results pass through")
    parser.add_argument("--preload", default="", help="modules to import once, comma-separated")
    parser.add_argument("--skip", default="", help="modules the preload goes without, comma-separated (a step that "
                        "needs one imports it itself)")
    parser.add_argument("--scratch", default=tempfile.gettempdir(), help="where each step's working folder goes")
    parser.add_argument("--heartbeat", type=float, default=60.0, help="exit when CONTROL/alive is older than this")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    preload([m for m in args.preload.split(",") if m], [m for m in args.skip.split(",") if m])
    with open(os.path.join(args.control, "ready"), "w") as fh:
        fh.write(str(os.getpid()))
    Server(args.control, args.scratch).serve(args.heartbeat)


if __name__ == "__main__":
    main()
