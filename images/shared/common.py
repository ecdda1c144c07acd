"""Helpers of the Python 3 stacks' step scripts (tf2, torch, onnx2tf; stack.json "recipe"), beside the step SDK
(step_sdk.py, which the Python 2.7 stack shares). Copied into each image's /opt/steps; they run inside containers,
never on the host."""

import os
import sys

from step_sdk import (EX_DATAERR, boolean, end_process, fail, first_line, oom_kills, reject,  # noqa: F401
                      runner_done, step_done, stop_if_killed, versions, write_json)


def run_child(argv, what, **kwargs):
    """subprocess.run for a converter the step runs in a process of its own (`what` names it in messages). A child
    killed by a signal (the memory limit's SIGKILL, a crash) stops the step there (stop_if_killed)."""
    import subprocess

    before = oom_kills()
    proc = subprocess.run(argv, **kwargs)
    stop_if_killed(proc.returncode, what, before)
    return proc


def output_to(path):
    """Send this process's stdout and stderr (the descriptors and Python's streams on them) to the end of `path`."""
    log = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    for fd in (1, 2):
        os.dup2(log, fd)
    os.close(log)
    # whatever the step had made of sys.stdout and sys.stderr, they write to those descriptors now
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)


def run_forked(body, what, log_path):
    """body() in a forked copy of this step, its output into log_path; its exit status (-N for signal N). No new
    interpreter starts: what the stack's warm worker imported (TensorFlow) is there already, where run_child's
    fresh process imported it again. Fork before this step has run its libraries (a copy of a library's threads
    mid-use can deadlock). A child killed by a signal stops the step, as with run_child."""
    before = oom_kills()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        def child():
            output_to(log_path)
            body()

        end_process(child)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)  # -N for signal N, as Popen says it
    stop_if_killed(code, what, before)
    return code


class Spec:
    """A model input as a runtime declares it: name, shape (None: dynamic), dtype."""

    def __init__(self, name, shape, dtype):
        import numpy as np

        self.name, self.dtype = name, np.dtype(dtype)
        # runtimes give ints, None, -1 or dimension names for dynamic sizes
        self.shape = [int(d) if isinstance(d, (int, np.integer)) and d >= 0 else None for d in shape]

    def concrete(self, dynamic=16):
        """A runnable shape: a dynamic batch becomes 1, other dynamic sizes `dynamic`."""
        return [1 if (d is None and i == 0) else (dynamic if d is None else d) for i, d in enumerate(self.shape)]

    def fits(self, shape):
        return len(shape) == len(self.shape) and all(d is None or d == s for d, s in zip(self.shape, shape))

    def to_json(self):
        return {"name": self.name, "shape": self.shape, "dtype": self.dtype.name}


def save_json_arrays(path, arrays):
    """{name: array} -> JSON readable by every stack, the TF.js runtime included (see verify_io)."""
    import verify_io

    verify_io.save_arrays(path, arrays)


def csv(value):
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def shapes(value):
    """'1,224,224,3:1,10' -> [[1,224,224,3],[1,10]]"""
    if not value:
        return []
    try:
        return [[int(d) for d in part.split(",") if d.strip()] for part in value.split(":")]
    except ValueError:
        reject(f"--input_shapes '{value}' is not a list of comma-separated integers (several inputs: use ':')")


def load_array_file(path):
    """A .npy -> [array]; a .npz or .json -> {name: array} (in file order). A bad file is the user's error."""
    import verify_io

    try:
        return verify_io.load_arrays(path)
    except verify_io.InputError as exc:
        reject(str(exc))


def runner_arguments(formats=None, options=()):
    """The command line every verification runner takes (the host's verify.plan_runs writes it):
    --format F --input MODEL --out DIR, then --plan JSON as the reference (the input plan: distributions, seed,
    samples, the user's files) or --inputs REF/inputs.json as the result; `options`: the format options this
    runner accepts (--name VALUE)."""
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--format", required=True, choices=formats)
    p.add_argument("--input", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--plan")
    p.add_argument("--inputs")
    for name in options:
        p.add_argument("--" + name)
    return p.parse_args()


# -- verification runs (every Python stack's runner) -----------------------------------------------
ULP_PERTURBATION = "inputs moved by one float32 rounding step"


def input_specs(model):
    """The model's inputs as verify_io.InputSpecs: the model's own `input_specs()`, or its `inputs` with a
    dynamic batch of 1 and other dynamic sizes of 16."""
    import verify_io

    if hasattr(model, "input_specs"):
        return model.input_specs()
    return [verify_io.InputSpec(s.name, s.concrete(), s.dtype) for s in model.inputs]


def run_batch(model, batches):
    """Run the model once per sample of the batches {input: [K, ...]}; ({output: [K, ...]}, {output: [K, ...]}
    of logits: the tensors feeding the outputs' final softmax/sigmoid/argmax, where the model can tell)."""
    import numpy as np

    count = len(next(iter(batches.values()))) if batches else 0
    outputs, logits, checks = {}, {}, {}
    for i in range(count):
        feeds = {name: batch[i] for name, batch in batches.items()}
        for name, value in model.run(feeds):
            outputs.setdefault(name, []).append(np.asarray(value))
        if hasattr(model, "run_logits"):
            for name, value in model.run_logits(feeds).items():
                logits.setdefault(name, []).append(np.asarray(value))
        for check in getattr(model, "checks", None) or []:  # per check: its first failure, else its first pass
            known = checks.get(check["name"])
            if known is None or (known["passed"] and not check["passed"]):
                checks[check["name"]] = dict(check, sample=i)
    stack = {n: np.stack(v) for n, v in outputs.items()}
    return stack, {n: np.stack(v) for n, v in logits.items() if len(v) == count}, list(checks.values())


def verification_run(model, args, info=None):
    """A runner's whole job: as the reference (--plan) make the inputs, run, and run again with the arithmetic
    perturbed (the model's `perturbed()`, else inputs moved by one rounding step); as the result (--inputs) run
    the reference's inputs. Writes inputs/outputs/logits (.npz, and .json for the TF.js runtime), run.json and
    step.json into --out."""
    import numpy as np

    import verify_io

    info = dict(info or {})
    reference = args.plan is not None
    if reference:
        specs = input_specs(model)
        try:
            batches, groups = verify_io.make_batches(specs, verify_io.read_plan(args.plan),
                                                     grid=getattr(model, "grid", None))
        except verify_io.InputError as exc:
            reject(str(exc))
        np.savez(os.path.join(args.out, "inputs.npz"), **batches)
        verify_io.save_arrays(os.path.join(args.out, "inputs.json"), batches)
        info.update(groups=groups, input_specs=[s.to_json() for s in specs])
    else:
        batches = load_array_file(args.inputs)
        if hasattr(model, "adapt_inputs"):
            batches, info["input_layout"] = model.adapt_inputs(batches)
    outputs, logits, checks = run_batch(model, batches)
    if not reference and hasattr(model, "adapt_outputs"):
        ref_dir = os.path.dirname(args.inputs)
        ref_out = os.path.join(ref_dir, "outputs.npz")
        if os.path.exists(ref_out):
            ref_logits = os.path.join(ref_dir, "logits.npz")
            outputs, logits, info["output_layout"] = model.adapt_outputs(
                outputs, logits, load_array_file(ref_out),
                load_array_file(ref_logits) if os.path.exists(ref_logits) else {})
    np.savez(os.path.join(args.out, "outputs.npz"), **outputs)
    if logits:
        np.savez(os.path.join(args.out, "logits.npz"), **logits)
    if reference:
        perturbed, how = model.perturbed() if hasattr(model, "perturbed") else (None, None)
        if perturbed is None:
            perturbed, how = model, ULP_PERTURBATION
            p_out, p_logits, _ = run_batch(model, verify_io.ulp_perturbed(batches))
        else:
            p_out, p_logits, _ = run_batch(perturbed, batches)
        np.savez(os.path.join(args.out, "perturbed.npz"), **p_out)
        if p_logits:
            np.savez(os.path.join(args.out, "perturbed_logits.npz"), **p_logits)
        info["perturbation"] = how
    info.update(
        inputs=[{"name": n, "shape": list(b.shape[1:]), "dtype": b.dtype.name} for n, b in batches.items()],
        samples=len(next(iter(batches.values()))) if batches else 0,
        outputs=[{"name": n, "shape": list(v.shape[1:]), "dtype": v.dtype.name} for n, v in outputs.items()],
        logits={n: getattr(model, "logit_ops", {}).get(n, "") for n in logits},
    )
    if checks:
        info["checks"] = checks
    runner_done(args.out, info)


def import_user_file(path):
    """Import a user's Python file by path, as a module named after it, with its folder importable (the code may
    import its neighbours). A failure is the user's input error. Runs only inside a no-network container."""
    import importlib.util

    folder = os.path.dirname(path)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = os.path.splitext(os.path.basename(path))[0]
    try:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    except Exception as exc:
        reject(f"{path}: importing it failed ({first_line(exc)})")
    return module
