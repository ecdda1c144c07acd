"""`orchestrator wizard`: for people who do not know the format names. It asks for the input, says what it
detected and where it can go, asks for the target and the quantization the route offers (with defaults) and
whatever else the route needs, prints the equivalent `orchestrator convert ...` command and runs it.

The questions are questionary's (prompt_toolkit); the answers become the same arguments `convert` takes, so the
wizard plans with the planner and validates with the options table like any command line."""

import shlex
from pathlib import Path

from orchestrator import formats, pipeline, planner, routes
from orchestrator import options as opts_mod
from orchestrator.errors import InputError, UsageError


def _ask(question):
    answer = question.ask()
    if answer is None:  # Ctrl-C inside a prompt: questionary returns None; the CLI says "interrupted" (exit 130)
        raise KeyboardInterrupt
    return answer


def targets(source, producer):
    """{target: chain} of every public format a conversion from `source` can reach, tflite first."""
    found = {}
    for target in planner.reachable(source):
        if formats.get(target).internal:
            continue
        try:
            found[target], _ = pipeline.plan(source, target, {}, complete=False, producer=producer)
        except UsageError:
            continue
    return dict(sorted(found.items(), key=lambda kv: (kv[0] != routes.DEFAULT_TARGET, kv[0])))


def quantize_choices(chain):
    """The --quantize values every step of the chain taking it allows, or () when the route takes none."""
    allowed = None
    for step in chain:
        if "quantize" in step.options:
            values = dict(step.choices).get("quantize", routes.OPTIONS["quantize"].choices)
            allowed = [v for v in (allowed or values) if v in values]
    return tuple(allowed or ())


def needed(chain, values):
    """Options the route cannot do without (its required ones, and those a chosen value requires)."""
    names = [name for name, _ in opts_mod.required(chain)]
    for name, value in values.items():
        names += [n for v, n in routes.OPTIONS[name].requires if v == value]
    return [n for i, n in enumerate(names) if n not in names[:i] and n not in values]


def command(source, path, out, to, values):
    words = ["orchestrator", "convert", source, str(path), str(out), "--to", to]
    for name, value in values.items():
        words += [f"--{name}", str(value)]
    return shlex.join(words)


def run(convert, questionary=None):
    """Ask, print the command, run it with `convert(source, input, output_dir, to=..., **values)`; return its
    result."""
    if questionary is None:
        import questionary
    path = Path(_ask(questionary.path("Model file or folder to convert:"))).expanduser()
    found = formats.candidates(path)
    if not found:
        formats.detect_format(path)  # raises the one-line reason (missing, unknown)
    if len(found) == 1:
        source, seen = found[0]
    else:
        picked = _ask(questionary.select(f"{path} could be several formats; which is it?",
                                         choices=[f"{name}: {seen}" for name, seen in found]))
        source, seen = found[[f"{n}: {s}" for n, s in found].index(picked)]
    print(f"detected {source}: {path} is {seen}", flush=True)
    producer = pipeline.producer_of(source, path)
    reachable = targets(source, producer)
    if not reachable:
        raise InputError(path, f"no route converts {source} models yet")
    for target, chain in reachable.items():
        print(f"  -> {target}: {' -> '.join(s.name for s in chain)} [{', '.join(planner.stacks_of(chain))}]")
    to = _ask(questionary.select("Convert to:", choices=list(reachable), default=next(iter(reachable))))
    chain, values = reachable[to], {}
    choices = quantize_choices(chain)
    if choices:
        quantize = _ask(questionary.select("Quantization:", choices=list(choices), default=choices[0]))
        if quantize != choices[0]:
            values["quantize"] = quantize
    for name in needed(chain, values):
        option = routes.OPTIONS[name]
        values[name] = _ask(questionary.text(f"--{name} ({option.help}):",
                                             validate=lambda text: bool(text.strip()) or "needed by this route"))
    default_out = path.parent / f"{path.name.split('.')[0] or 'model'}-{to}"
    out = _ask(questionary.text("Output folder:", default=str(default_out)))
    print("equivalent command:\n  " + command(source, path, out, to, values), flush=True)
    if not _ask(questionary.confirm("Run it now?", default=True)):
        return "not run"
    return convert(source, str(path), out, to=to, **values)
