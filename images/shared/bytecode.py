"""Build-time helper of the Python 3 recipe (python-venv.Dockerfile), run once in the final stage: compile the
bytecode of the virtualenv's modules that the stack's steps import, and of nothing else.

A step's root file system is read-only, so a module without a .pyc in the image is compiled again by every
container that imports it (TensorFlow's Python alone is seconds of it). Compiling the whole virtualenv costs about
twice the bytes of what the steps load, so this imports what they load and writes only those modules' bytecode:

  - the stack's smoke test (stack.json "smoke_test", run as code),
  - its warm worker's preload list (stack.json "worker": {"preload": [...]}),
  - every module the scripts in the steps folder import (`import x` and `from x import y`, absolute ones, at their
    top level and inside functions alike; y is tried as a submodule x.y),

with the stack's environment (stack.json "environment") set, then writes a hash-based .pyc that is not checked
against its source (PEP 552, unchecked-hash: nothing in an image changes) for every loaded module whose source
lies under the virtualenv. A module that fails to import is skipped (said in the summary); compiling nothing at
all fails the build. The steps folder's own modules are not imported here (their imports are read from their
source) and get no bytecode: they are small, and not under the virtualenv.
"""

import argparse
import ast
import importlib
import importlib.util
import json
import os
import py_compile
import shutil
import sys
import tempfile


def imported_names(source, filename="<step>"):
    """The absolute module names a script's source imports, anywhere in it, as (name, maybe): `import a.b` gives
    (a.b, False); `from a import b, c` gives (a, False), (a.b, True) and (a.c, True): b may be a submodule of a, or
    just a name in it."""
    names = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            names += [(alias.name, False) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append((node.module, False))
            names += [(f"{node.module}.{alias.name}", True) for alias in node.names if alias.name != "*"]
    return names


def step_imports(steps):
    """Every (module name, maybe) the .py files of the steps folder import, but the folder's own modules."""
    scripts = sorted(p for p in os.listdir(steps) if p.endswith(".py"))
    found = {}
    for path in scripts:
        with open(os.path.join(steps, path), encoding="utf-8") as fh:
            for name, maybe in imported_names(fh.read(), path):
                found[name] = found.get(name, True) and maybe  # imported for sure by one script: for sure
    own = {p[:-3] for p in scripts}
    return [(name, maybe) for name, maybe in found.items() if name.split(".")[0] not in own]


def load(smoke_test, names):
    """Run the smoke test, then import each (name, maybe); the names that failed to import (a maybe-submodule that
    is none is not one of them)."""
    failed = []
    if smoke_test:
        try:
            exec(compile(smoke_test, "<smoke test>", "exec"), {"__name__": "__smoke_test__"})
        except (Exception, SystemExit) as exc:
            failed.append(f"the smoke test ({type(exc).__name__}: {exc})")
    for name, maybe in names:
        try:
            importlib.import_module(name)
        except (Exception, SystemExit) as exc:
            if not (maybe and isinstance(exc, ModuleNotFoundError) and exc.name == name):
                failed.append(name)
    return failed


def loaded_sources(root):
    """The .py files under `root` that the modules loaded in this interpreter came from."""
    root = os.path.realpath(root) + os.sep
    found = set()
    for module in list(sys.modules.values()):
        origin = getattr(getattr(module, "__spec__", None), "origin", None) or getattr(module, "__file__", None)
        if isinstance(origin, str) and origin.endswith(".py"):
            path = os.path.realpath(origin)
            if path.startswith(root) and os.path.isfile(path):
                found.add(path)
    return sorted(found)


def compile_all(sources):
    """Write each source's unchecked-hash .pyc (the interpreter's default optimization level) where the
    interpreter looks for it; (how many were written, their bytes)."""
    count = size = 0
    for source in sources:
        target = importlib.util.cache_from_source(source)
        try:
            py_compile.compile(source, cfile=target, doraise=True,
                               invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
        except (py_compile.PyCompileError, OSError) as exc:
            print(f"bytecode: not compiled: {source}: {exc}", file=sys.stderr)
            continue
        count += 1
        size += os.path.getsize(target)
    return count, size


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke-test", default="", help="the stack's smoke test (Python code)")
    p.add_argument("--preload", default="", help="the worker's preload modules, comma-separated")
    p.add_argument("--environment", default="{}", help="the stack's environment, a JSON object")
    p.add_argument("--steps", default=os.path.dirname(os.path.abspath(__file__)), help="the step scripts' folder")
    p.add_argument("--root", default=sys.prefix, help="compile the loaded modules under this folder")
    args = p.parse_args(argv)

    names = [(n, False) for n in args.preload.split(",") if n] + step_imports(args.steps)
    scratch = tempfile.mkdtemp(prefix="bytecode-")
    # what importing may write (a library's config or cache in HOME, temporary files) goes to a folder removed
    # below, never into the image's layer
    os.environ.update(json.loads(args.environment), HOME=scratch, TMPDIR=scratch, XDG_CACHE_HOME=scratch)
    tempfile.tempdir = scratch
    sys.path.insert(0, args.steps)
    try:
        failed = load(args.smoke_test, names)
        count, size = compile_all(loaded_sources(args.root))
    finally:
        tempfile.tempdir = None
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"bytecode: {count} modules compiled ({size / 1e6:.1f} MB) under {args.root}, from {len(names)} imports "
          f"of the smoke test, the preload list and the steps"
          + (f"; {len(failed)} did not import: {', '.join(failed)}" if failed else ""), flush=True)
    if count == 0:
        print("bytecode: nothing was compiled (did the stack's libraries import?)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # not the libraries' exit handlers: their threads (TensorFlow's, JAX's) have nothing to finish

