"""Validate and normalize route options given on the command line (fire parses values as Python literals:
`--input_shapes 1,224,224,3` arrives as a tuple) into the strings the step scripts receive."""

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from orchestrator import routes
from orchestrator.errors import InputError, UsageError

SHAPES_RE = re.compile(r"^-?\d+(,-?\d+)*(:-?\d+(,-?\d+)*)*$")
SIGNATURE_RE = re.compile(r"^(([0-9]+|[A-Za-z_][A-Za-z0-9_]*)(,([0-9]+|[A-Za-z_][A-Za-z0-9_]*))*)?(:[a-z0-9]+)?$")
IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class CodeRef:
    """FILE.py:NAME, a user's Python file (mounted read-only with its folder, for its own imports) and a name in it."""

    path: Path
    attr: str

    def __str__(self):
        return f"{self.path}:{self.attr}"


def _repeated(value):
    """The values of a repeatable option: the CLI gives a list when the flag was repeated."""
    if isinstance(value, list):
        return value
    if isinstance(value, str):
        return value.split(";")
    return [value]


def _join(value):
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def coerce(option, value):
    name = f"--{option.name}"
    if option.kind == "choice":
        value = str(value)
        if value not in option.choices:
            raise UsageError(f"{name} must be one of {', '.join(option.choices)} (got '{value}')")
        return value
    if option.kind == "csv":
        value = _join(value)
        if not value.strip(","):
            raise UsageError(f"{name} needs a comma-separated list")
        return value
    if option.kind == "shapes":
        value = _join(value).replace(" ", "")
        if not SHAPES_RE.match(value):
            raise UsageError(f"{name} must look like 1,224,224,3 (several inputs: 1,224,224,3:1,10); got '{value}'")
        return value
    if option.kind == "int":
        try:
            return int(value)
        except (TypeError, ValueError):
            raise UsageError(f"{name} needs an integer (got '{value}')") from None
    if option.kind == "float":
        try:
            return float(value)
        except (TypeError, ValueError):
            raise UsageError(f"{name} needs a number (got '{value}')") from None
    if option.kind == "bool":
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "1", "yes"):
            return True
        if str(value).lower() in ("false", "0", "no"):
            return False
        raise UsageError(f"{name} needs true or false (got '{value}')")
    if option.kind == "optcsv":  # bare flag = all nodes; or a comma list of node names (with * wildcards)
        if isinstance(value, bool):
            return value
        value = _join(value)
        if value.lower() in ("true", "false"):
            return value.lower() == "true"
        return value
    if option.kind == "metadata":  # NAME:FILE.json,... ; the files are mounted into the step
        entries = []
        for item in _join(value).split(","):
            meta_name, sep, file = item.partition(":")
            if not sep or not meta_name or not file:
                raise UsageError(f"{name} wants NAME:FILE.json[,NAME:FILE.json] (got '{item}')")
            path = Path(file)
            if not path.is_file():
                raise InputError(path, f"no such file (given to {name})")
            entries.append((meta_name, path.resolve()))
        return tuple(entries)
    if option.kind == "path":
        path = Path(str(value))
        if not path.exists():
            raise InputError(path, f"no such file or folder (given to {name})")
        return path.resolve()
    if option.kind == "signatures":  # SHAPE:DTYPE[;SHAPE:DTYPE...] (one per input; the flag may repeat)
        parts = [",".join(map(str, p)) if isinstance(p, (list, tuple)) else str(p).strip() for p in _repeated(value)]
        parts = [p for p in parts if p]
        for part in parts:
            if not SIGNATURE_RE.match(part.replace(" ", "")):
                raise UsageError(f"{name} wants SHAPE:DTYPE, e.g. 3,4:float32 or b,4:float32 (got '{part}')")
        if not parts:
            raise UsageError(f"{name} wants SHAPE:DTYPE, e.g. 3,4:float32")
        return ";".join(p.replace(" ", "") for p in parts)
    if option.kind == "polyshapes":  # '(b, 4)' per input
        parts = []
        for part in _repeated(value):
            if isinstance(part, (list, tuple)):  # fire read (3, 4) as a tuple
                part = "(" + ", ".join(map(str, part)) + ("," if len(part) == 1 else "") + ")"
            parts.append(str(part).strip())
        if not parts or any(not (p.startswith("(") and p.endswith(")")) for p in parts):
            raise UsageError(f"{name} wants a jax2tf shape per input, e.g. '(b, 4)' (got '{value}')")
        return ";".join(parts)
    if option.kind == "code":  # FILE.py:Name
        text = _join(value)
        file, sep, attr = text.rpartition(":")
        if not sep or not file or not IDENTIFIER_RE.match(attr):
            raise UsageError(f"{name} wants FILE.py:Name (got '{text}')")
        path = Path(file)
        if not path.is_file():
            raise InputError(path, f"no such file (given to {name})")
        if path.suffix != ".py":
            raise InputError(path, f"is not a Python file (.py) (given to {name})")
        return CodeRef(path.resolve(), attr)
    if option.kind == "json":
        text = value if isinstance(value, str) else json.dumps(value)
        try:
            parsed = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"{name} wants JSON, e.g. '{{\"num_classes\": 10}}' or '[10]' ({exc})") from None
        if not isinstance(parsed, (list, dict)):
            raise UsageError(f"{name} wants a JSON list (positional) or object (keyword arguments)")
        return json.dumps(parsed)
    if option.kind == "prefix":  # a checkpoint prefix: PREFIX.index must exist
        path = Path(str(value))
        if not Path(str(path) + ".index").is_file():
            raise InputError(path, f"checkpoint prefix does not exist: no {path.name}.index (given to {name})")
        return path.absolute()
    return str(value)


def validate(chain, given):
    """Check option names against the chain (and verification), coerce values, apply cross-option rules.

    Returns {name: value} holding only what was given (defaults stay with the step scripts)."""
    allowed = []
    for step in chain:
        allowed += [o for o in step.options if o not in allowed]
    allowed += [o for o in routes.VERIFY_OPTIONS if o not in allowed]
    if any(n in allowed for by_value, _ in routes.DEPRECATED.values() for n in by_value.values()):
        allowed += [o for o in routes.DEPRECATED if o not in allowed]
    route = f"{chain[0].source} -> {chain[-1].target}"
    result = {}
    for raw_name, value in given.items():
        name = raw_name.replace("-", "_")
        if name not in allowed:
            raise UsageError(f"unknown option --{raw_name} for {route}; options: "
                             + " ".join(f"--{o}" for o in allowed))
        result[name] = coerce(routes.OPTIONS[name], value)
    name = result.get("model_tflite")
    if name is not None and (not name.endswith(".tflite") or "/" in name or name.startswith(".")):
        raise UsageError(f"--model_tflite wants a file name ending in .tflite (got '{name}')")
    for old, (by_value, warning) in routes.DEPRECATED.items():
        if old in result:
            value = result.pop(old)
            if value not in by_value:
                raise UsageError(f"--{old} must be one of {', '.join(map(str, by_value))}")
            print(f"orchestrator: warning: {warning}", file=sys.stderr)
            new = by_value[value]
            if new not in allowed:
                raise UsageError(f"--{old} has no meaning for {route}")
            result.setdefault(new, True)
    for step in chain:
        for name, allowed in step.choices:
            if name in result and result[name] not in allowed:
                shown = ", ".join(str(a).lower() if isinstance(a, bool) else str(a) for a in allowed)
                raise UsageError(f"--{name} {str(result[name]).lower() if isinstance(result[name], bool) else result[name]}"
                                 f" is not available in step {step.name} ({step.source} -> {step.target}); "
                                 f"choose: {shown}")
    for (opt, val), needed in routes.REQUIRES.items():
        if result.get(opt) == val and needed not in result:
            raise UsageError(f"--{opt} {val} needs --{needed}")
    for group in routes.TOGETHER:
        given_now = [g for g in group if g in result]
        if given_now and len(given_now) != len(group):
            missing = [g for g in group if g not in result]
            raise UsageError(f"--{given_now[0]} needs --{missing[0]}")
    for step in chain:
        for needed in routes.STEP_REQUIRED.get(step.name, ()):
            if needed not in result:
                raise UsageError(f"{step.source} -> {step.target} needs --{needed}")
    return result


def mounts(names, values, root="/in/opt"):
    """Read-only mounts for the file-valued options among `names`: ({host path: container path}, {option (or
    (option, i)): container value}). A CodeRef mounts its file's folder (the code may import its neighbours)."""
    inputs, mounted = {}, {}
    for name in names:
        value = values.get(name)
        if isinstance(value, Path):
            mounted[name] = f"{root}/{name}/{value.name}"
            inputs[str(value)] = mounted[name]
        elif isinstance(value, CodeRef):
            inputs[str(value.path.parent)] = f"{root}/{name}"
            mounted[name] = f"{root}/{name}/{value.path.name}:{value.attr}"
        elif name in routes.OPTIONS and routes.OPTIONS[name].kind == "metadata" and value:
            for j, (_meta, path) in enumerate(value):
                mounted[(name, j)] = f"{root}/{name}/{j}/{path.name}"
                inputs[str(path)] = mounted[(name, j)]
    return inputs, mounted


def as_args(names, values, mounted):
    """Command-line arguments for a step script: `--name value` for each given option the step accepts.
    Path options are replaced by their container path (`mounted`)."""
    args = []
    for name in names:
        if name not in values or name in routes.HOST_OPTIONS:
            continue
        value = values[name]
        if name in mounted:
            value = mounted[name]
        elif isinstance(value, tuple) and value and isinstance(value[0], tuple):  # NAME:FILE pairs
            value = ",".join(f"{meta}:{mounted[(name, i)]}" for i, (meta, _) in enumerate(value))
        elif isinstance(value, bool):
            value = "true" if value else "false"
        args += [f"--{name}", str(value)]
    return args
