"""Validate and normalize route options given on the command line (fire parses values as Python literals:
`--input_shapes 1,224,224,3` arrives as a tuple) into the strings the step scripts receive."""

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from orchestrator import contents, protocol, routes, shapes
from orchestrator.errors import InputError, MissingOption, UsageError

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
        _check_dims(name, value, [[int(d) for d in part.split(",")] for part in value.split(":")])
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
        contents.check_mountable(path.resolve(), f" (given to {name})")
        return path.resolve()
    if option.kind == "signatures":  # SHAPE:DTYPE[;SHAPE:DTYPE...] (one per input; the flag may repeat)
        parts = [",".join(map(str, p)) if isinstance(p, (list, tuple)) else str(p).strip() for p in _repeated(value)]
        parts = [p for p in parts if p]
        for part in parts:
            if not SIGNATURE_RE.match(part.replace(" ", "")):
                raise UsageError(f"{name} wants SHAPE:DTYPE, e.g. 3,4:float32 or b,4:float32 (got '{part}')")
        if not parts:
            raise UsageError(f"{name} wants SHAPE:DTYPE, e.g. 3,4:float32")
        _check_dims(name, ";".join(parts), [[int(d) if d.isdigit() else d for d in p.replace(" ", "").split(":")[0]
                                             .split(",") if d] for p in parts])
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
        contents.check_mountable(path.resolve(), f" (given to {name})")
        contents.check_python(path, attr.split(".")[0], name)
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


def _check_dims(name, value, inputs):
    """Each input's shape given to option `name` (sizes; a name is a dynamic dimension) is one a model can have."""
    for i, dims in enumerate(inputs, 1):
        why = shapes.problem(dims, unknown=())
        if why:
            which = f"input {i}" if len(inputs) > 1 else "the input"
            raise UsageError(f"{name} {value}: {which} {why}")


def accepted(chain):
    """Every option name a chain accepts, in order: its input's, its steps', the name of its final artifact,
    verification's, and deprecated spellings of any of them."""
    from orchestrator import formats

    names = list(formats.get(chain[0].source).adapter.options)
    for step in chain:
        names += [o for o in step.accepts() if o not in names]
    names += [o.name for o in routes.OPTIONS.values() if o.names_artifact == chain[-1].target and o.name not in names]
    names += [o for o in routes.VERIFY_OPTIONS if o not in names]
    names += [o.name for o in routes.OPTIONS.values() if any(new in names for _, new in o.replaced_by)]
    return names


def required(chain):
    """(option, what needs it) for every option the chain cannot do without."""
    from orchestrator import formats

    route = f"{chain[0].source} -> {chain[-1].target}"
    needs = [(o, route) for o in formats.get(chain[0].source).adapter.required]
    needs += [(o, f"{step.source} -> {step.target}") for step in chain for o in step.required]
    return needs


def validate(chain, given, complete=True):
    """Check option names against the chain (and verification), coerce values, apply each option's rules.
    `complete`: also insist on the options the chain requires (a `plan` shows them instead).

    Returns {name: value} holding only what was given (defaults stay with the step scripts)."""
    from orchestrator import formats

    allowed = accepted(chain)
    route = f"{chain[0].source} -> {chain[-1].target}"
    result = {}
    for raw_name, value in given.items():
        name = raw_name.replace("-", "_")
        if name not in allowed:
            raise UsageError(f"unknown option --{raw_name} for {route}; options: "
                             + " ".join(f"--{o}" for o in allowed))
        option = routes.OPTIONS[name]
        result[name] = coerce(option, value)
        if option.model_format:  # a model given as an option: checked like an INPUT of its format
            formats.check(option.model_format, result[name])
        if option.only_to and chain[-1].target not in option.only_to:
            raise UsageError(f"--{name} is for --to {' or '.join(option.only_to)} only")
    for name in list(result):
        option = routes.OPTIONS[name]
        if option.names_artifact:
            value = result[name]
            suffix = formats.get(option.names_artifact).artifact.rpartition(".")[2]
            if not value.endswith("." + suffix) or "/" in value or value.startswith("."):
                raise UsageError(f"--{name} wants a file name ending in .{suffix} (got '{value}')")
        if option.replaced_by:
            value = result.pop(name)
            by_value = dict(option.replaced_by)
            if value not in by_value:
                raise UsageError(f"--{name} must be one of {', '.join(map(str, by_value))}")
            print(f"orchestrator: warning: --{name} is deprecated; use "
                  f"{' or '.join('--' + n for n in by_value.values())}", file=sys.stderr)
            if by_value[value] not in allowed:
                raise UsageError(f"--{name} has no meaning for {route}")
            result.setdefault(by_value[value], True)
    for step in chain:
        for name, allowed_values in step.choices:
            if name in result and result[name] not in allowed_values:
                shown = ", ".join(str(a).lower() if isinstance(a, bool) else str(a) for a in allowed_values)
                value = str(result[name]).lower() if isinstance(result[name], bool) else result[name]
                raise UsageError(f"--{name} {value} is not available in step {step.name} ({step.source} -> "
                                 f"{step.target}); choose: {shown}")
    for name in list(result):
        option = routes.OPTIONS[name]
        for value, needed in option.requires:
            if result[name] == value and needed not in result:
                raise UsageError(f"--{name} {value} needs --{needed}")
        if option.together and option.together not in result:
            raise UsageError(f"--{name} needs --{option.together}")
    if complete:
        for needed, what in required(chain):
            if needed not in result:
                raise MissingOption(f"{what} needs --{needed}")
    return result


def artifact_names(values, target):
    """{artifact file name: the name the user chose for it} from options that name the final artifact."""
    from orchestrator import formats

    return {formats.get(target).artifact: values[o.name] for o in routes.OPTIONS.values()
            if o.names_artifact == target and o.name in values}


def mounts(names, values, root=protocol.OPTION_DIR):
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
        if name not in values:
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
