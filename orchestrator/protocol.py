"""The contract between the host and the step scripts in the images, named once: where a step finds its inputs
and writes its outputs inside the container, and the documented schemas (orchestrator/schemas/) of what the
images write (step.json, run.json) and of what describes a stack (stack.json). The host checks each file it reads.
"""

import functools
import json
from pathlib import Path

import jsonschema

# container paths
STEPS_DIR = "/opt/steps"  # the stack's step scripts (and images/shared/ helpers)
MODEL_DIR = "/in/model"  # the model a step or runner reads (the user's input, or the previous step's output)
OPTION_DIR = "/in/opt"  # files given as options, one folder per option
REFERENCE_DIR = "/in/ref"  # the reference run, for the result runner and the compare step
RESULT_DIR = "/in/got"  # the result run, for the compare step
OUT_DIR = "/out"  # the only writable mount: the step's artifacts, step.json (and run.json)

SCHEMAS = Path(__file__).resolve().parent / "schemas"


@functools.lru_cache(maxsize=None)
def schema(name):
    return json.loads((SCHEMAS / f"{name}.schema.json").read_text())


def problem(name, data):
    """The first way `data` breaks schema `name` ("step", "run", "stack") as one line, or None."""
    validator = jsonschema.Draft202012Validator(schema(name))
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path)
    return f"{where + ': ' if where else ''}{error.message}"


def read(name, path):
    """Read and check a JSON file the images wrote: (data, None), or (None, the problem as one line)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        return None, f"no readable {Path(path).name} ({type(exc).__name__})"
    why = problem(name, data)
    return (None, f"{Path(path).name} does not follow the {name}.json schema: {why}") if why else (data, None)
