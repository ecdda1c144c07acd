"""Stacks (images/<stack>/) and their images: base images without a registry, content-hash tags,
builds behind proxies and private indexes, listing, and moving the set to an air-gapped host."""

import contextlib
import datetime
import fnmatch
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from orchestrator import machine, protocol
from orchestrator.engine import STEP_CONTAINER
from orchestrator.errors import (BuildFailed, BuildsFailed, EnvironmentProblem, InputError, OrchestratorError,
                                 UsageError, one_line)

REPO = "orchestrator"
BASE_REPO = f"{REPO}/debian"
SUITES = ("bookworm", "bullseye")
REGISTRY_BASES = {"bookworm": "debian:bookworm-slim", "bullseye": "debian:bullseye-slim"}
LABEL = "org.orchestrator"
HASH_IGNORE = {"__pycache__", "_build", ".pytest_cache"}
SHARED = "shared"  # images/shared/: build recipes (NAME.Dockerfile) and the step helpers of the recipe stacks
WORKER_SCRIPT = "step_server.py"  # images/shared/: the warm worker of a stack whose stack.json has "worker"


def images_dir():
    env = os.environ.get("ORCHESTRATOR_IMAGES_DIR")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "images"


@dataclass(frozen=True)
class Stack:
    name: str
    path: Path
    description: str
    base: str  # Debian suite of the base image
    runs_formats: tuple
    lock: str = "requirements.lock"  # the stack's hash-pinned dependency lock
    recipe: str = ""  # images/shared/<recipe>.Dockerfile instead of an own Dockerfile; brings images/shared/ along
    smoke_test: str = ""  # Python the recipe runs in the finished image (its main libraries import)
    wheelhouse: str = ""  # why the build needs local wheels (default wheelhouse: pip's find-links)
    helpers: tuple = ()  # files of images/shared/ a stack with its own Dockerfile takes (into _build/shared/)
    interpreter: str = "python"  # runs its step scripts
    environment: tuple = ()  # (name, value) pairs set in its containers
    compare_in: str = ""  # the stack that compares its results, when it has no compare step itself
    reads: tuple = ()  # (library, "MAJOR.MINOR-MAJOR.MINOR"): the versions of that library's files it reads
    preload: tuple = None  # stack.json "worker": the modules its warm worker imports once; None: no worker
    preload_skip: tuple = ()  # stack.json "worker" "skip": modules that preload goes without
    image: str = ""  # stack.json "image": the stack whose image this one's steps run in (an alias of that image)
    host: "Stack" = None  # that stack, as discover_stacks resolves it
    aliases: tuple = ()  # the stacks whose steps run in this stack's image (their "image" names it)

    @property
    def image_stack(self):
        """The stack whose image this one's steps run in: the one its "image" names, else itself."""
        if not self.image:
            return self
        if self.host is None:
            raise EnvironmentProblem(f"stack '{self.name}' runs in the image of stack '{self.image}', which is not "
                                     "resolved (read the stacks with discover_stacks)")
        return self.host

    @property
    def image_preload(self):
        """The modules its image's bytecode step imports for the warm workers: its own preload list and its
        aliases', each module once, in order. An alias's: its host's."""
        if self.image:
            return self.image_stack.image_preload
        found = dict.fromkeys(self.preload or ())
        for alias in self.aliases:
            found.update(dict.fromkeys(alias.preload or ()))
        return tuple(found)

    @property
    def image_environment(self):
        """The environment its image's bytecode step imports under: its own and its aliases' (discover_stacks
        refuses stacks of one image that set one name to different values). An alias's: its host's."""
        if self.image:
            return self.image_stack.image_environment
        merged = dict(self.environment)
        for alias in self.aliases:
            merged.update(alias.environment)
        return merged

    @property
    def worker(self):
        """The command of its warm worker (orchestrator/workers.py), or None."""
        return self.worker_command(self.preload)

    @property
    def bare_worker(self):
        """The command of a warm worker of its image that imports nothing ahead (for steps that need none of the
        preloaded libraries, e.g. a Graphviz call), or None when the stack has no worker."""
        return self.worker_command(())

    def worker_command(self, preload):
        if self.preload is None:
            return None
        skip = ("--skip", ",".join(self.preload_skip)) if self.preload_skip and preload else ()
        return (self.interpreter, f"{protocol.STEPS_DIR}/{WORKER_SCRIPT}", "--preload", ",".join(preload), *skip)

    @property
    def shared(self):
        return bool(self.recipe)

    def reads_file(self, producer):
        """False when the stack declares the versions of the producer's library it reads and this is not one."""
        from orchestrator.producers import in_range

        ranges = dict(self.reads)
        return producer is None or producer.library not in ranges or in_range(producer, ranges[producer.library])

    def has_script(self, name):
        """Whether its image carries step script `name` for this stack: its own steps/, or a shared file its image
        takes (an alias: its host's). The steps of the other stacks sharing the image are theirs, not this one's."""
        return (self.path / "steps" / name).is_file() or any(f.name == name for f in self.shared_files())

    @property
    def compares_in(self):
        """The stack whose images/shared/compare.py compares this stack's results."""
        return self.compare_in or self.name

    def shared_files(self):
        """The files of images/shared/ this stack's image carries: all step helpers for a recipe stack, else
        the ones stack.json names in "shared_helpers"."""
        if self.image:
            return self.image_stack.shared_files()
        folder = self.path.parent / SHARED
        if self.recipe:
            return [f for f in _hashed_files(folder) if not f.name.endswith(".Dockerfile")]
        return [folder / name for name in self.helpers]

    @property
    def dockerfile(self):
        if self.image:
            return self.image_stack.dockerfile
        if self.recipe:
            return self.path.parent / SHARED / f"{self.recipe}.Dockerfile"
        return self.path / "Dockerfile"

    @property
    def repository(self):
        return f"{REPO}/{self.image_stack.name}"

    def content_hash(self):
        """sha256 of what its image is made of: its folder, the shared files it takes, and the folder (stack.json,
        steps/) of every alias stack whose steps run in it. An alias's is its host's."""
        if self.image:
            return self.image_stack.content_hash()
        own = self._own_content_hash()
        if not self.aliases:
            return own
        parts = [own] + [f"{alias.name}\0{content_hash(alias.path)}" for alias in sorted(self.aliases,
                                                                                         key=lambda a: a.name)]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    def _own_content_hash(self):
        if self.shared:
            extra = content_hash(self.path.parent / SHARED)
        elif self.helpers:
            extra = hashlib.sha256(b"".join(f.name.encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest()
                                            for f in self.shared_files())).hexdigest()
        else:
            return content_hash(self.path)
        return hashlib.sha256((content_hash(self.path) + extra).encode()).hexdigest()

    def tag(self):
        return f"{self.repository}:{self.content_hash()[:12]}"


def _hashed_files(folder):
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if d not in HASH_IGNORE)
        for name in sorted(filenames):
            if not name.endswith(".pyc"):
                yield Path(dirpath) / name


def content_hash(folder):
    """sha256 over the relative paths and bytes of every file in the folder (build leftovers ignored)."""
    folder = Path(folder)
    h = hashlib.sha256()
    for f in sorted(_hashed_files(folder), key=lambda p: p.relative_to(folder).as_posix()):
        h.update(f.relative_to(folder).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


# what an alias stack (stack.json "image") leaves to the stack whose image it runs in: stack.json keys, and files
ALIAS_KEYS = ("base", "lock", "recipe", "smoke_test", "wheelhouse", "shared_helpers")
ALIAS_FILES = ("Dockerfile", "requirements.in", "requirements.lock", "requirements.exclude", "site-packages")


def load_stack(path):
    """One stack folder, checked on its own; an alias (stack.json "image") is resolved by discover_stacks."""
    path = Path(path)
    meta_file = path / "stack.json"
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, ValueError) as exc:
        raise EnvironmentProblem(f"{meta_file}: cannot read stack description ({exc})") from exc
    image = meta.get("image") if isinstance(meta, dict) else None
    if isinstance(image, str):  # said before the schema's more general words
        own = [key for key in ALIAS_KEYS if key in meta] + [name for name in ALIAS_FILES if (path / name).exists()]
        if own:
            raise EnvironmentProblem(f"{meta_file}: its steps run in the image of stack '{image}' (\"image\"), so it "
                                     f"has no {', '.join(own)} of its own; those of '{image}' make that image")
    why = protocol.problem("stack", meta)
    if why:
        raise EnvironmentProblem(f"{meta_file}: {why}")
    lock = meta.get("lock", "requirements.lock")
    stack = Stack(path.name, path, meta["description"], meta.get("base", ""), tuple(meta.get("runs_formats", ())),
                  lock, meta.get("recipe", ""), meta.get("smoke_test", ""), meta.get("wheelhouse", ""),
                  tuple(meta.get("shared_helpers", ())), meta.get("interpreter", "python"),
                  tuple(sorted(meta.get("environment", {}).items())), meta.get("compare_in", ""),
                  tuple(sorted(meta.get("reads", {}).items())),
                  tuple(meta["worker"]["preload"]) if "worker" in meta else None,
                  tuple(meta.get("worker", {}).get("skip", ())), image=meta.get("image", ""))
    if stack.image:
        return stack  # its image's files are its host's: checked by discover_stacks once resolved
    if stack.preload is not None and not stack.has_script(WORKER_SCRIPT):
        raise EnvironmentProblem(f"{meta_file}: a stack with a \"worker\" needs images/shared/{WORKER_SCRIPT} "
                                 "(a recipe brings it; else list it in \"shared_helpers\")")
    for required in (stack.dockerfile, path / lock, *stack.shared_files()):
        if not required.is_file():
            raise EnvironmentProblem(f"{required}: missing (every stack needs a Dockerfile, or a recipe, and a lock)")
    return stack


def discover_stacks(root=None):
    """{name: Stack} of every folder under images/ with a stack.json, aliases resolved (_resolve_aliases)."""
    root = Path(root) if root else images_dir()
    found = {p.name: load_stack(p) for p in sorted(root.iterdir()) if (p / "stack.json").is_file()}
    return _resolve_aliases(found)


def _resolve_aliases(stacks):
    """Tie each alias stack (stack.json "image": another stack's name) to that stack, and that stack to its aliases.
    Refused, in one line: a name that is no stack, is the alias itself, or is an alias too; stacks of one image whose
    environments set one name to different values (the image's bytecode is compiled under one environment); an
    alias with a worker whose image has no warm-worker script."""
    aliases = {}
    for stack in stacks.values():
        if not stack.image:
            continue
        where = stack.path / "stack.json"
        host = stacks.get(stack.image)
        if host is None or host.name == stack.name:
            others = ", ".join(n for n in stacks if n != stack.name) or "none"
            raise EnvironmentProblem(f"{where}: \"image\": '{stack.image}' is " +
                                     ("the stack itself" if host is not None else "no stack") +
                                     f"; name the stack whose image its steps run in (stacks: {others})")
        if host.image:
            raise EnvironmentProblem(f"{where}: \"image\": '{host.name}' runs in the image of stack '{host.image}' "
                                     f"itself; name '{host.image}', the stack that builds it")
        aliases.setdefault(host.name, []).append(stack)
    resolved = dict(stacks)
    for host_name, members in aliases.items():
        host = replace(stacks[host_name], aliases=tuple(members))
        seen = dict(host.environment)
        for alias in members:
            for key, value in alias.environment:
                if key in seen and seen[key] != value:
                    raise EnvironmentProblem(
                        f"{alias.path / 'stack.json'}: \"environment\": {key}={value!r}, but another stack in "
                        f"the image of stack '{host.name}' sets {key}={seen[key]!r}; the image's bytecode is compiled "
                        "under one environment, so the stacks of one image must agree on every name they both set")
                seen[key] = value
        resolved[host_name] = host
        for alias in members:
            alias = replace(alias, host=host, base=host.base)
            if alias.preload is not None and not alias.has_script(WORKER_SCRIPT):
                raise EnvironmentProblem(f"{alias.path / 'stack.json'}: a stack with a \"worker\" needs "
                                         f"images/shared/{WORKER_SCRIPT} in its image (that of stack '{host.name}')")
            resolved[alias.name] = alias
    return resolved


def get_stack(name, root=None):
    stacks = discover_stacks(root)
    if name not in stacks:
        raise UsageError(f"unknown stack '{name}'; stacks: {', '.join(stacks) or 'none'}")
    return stacks[name]


# -- base images ------------------------------------------------------------------------------
def base_ref(suite):
    return f"{BASE_REPO}:{suite}"


def build_base(engine, suite="bookworm", mirror=None, from_registry=False, force=False, log=print):
    """Create the base image for `suite`: debootstrap from a Debian mirror and `docker import` it
    (no registry needed), or with `from_registry`, tag a registry image (`debian:<suite>-slim`)."""
    if suite not in SUITES:
        raise UsageError(f"unknown suite '{suite}'; choose one of {', '.join(SUITES)}")
    ref = base_ref(suite)
    existing = engine.image(ref)
    if existing and not force:
        log(f"{ref} exists ({existing['id'][:19]}); --force rebuilds it")
        return existing["id"]
    if from_registry:
        return _base_from_registry(engine, suite, ref, log)
    mirror = mirror or machine.debian_mirror()
    if not mirror:
        raise EnvironmentProblem("no Debian mirror in this machine's apt sources; pass --mirror URL")
    if not shutil.which("debootstrap"):
        raise EnvironmentProblem("debootstrap is not installed; `apt-get install debootstrap` (or `make engine`),"
                                 " or use --from-registry")
    if os.geteuid() != 0:
        raise EnvironmentProblem("debootstrap needs root; run `orchestrator images base` as root")
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    with tempfile.TemporaryDirectory(prefix="orchestrator-base-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        log(f"debootstrap --variant=minbase {suite} from {mirror}")
        code, output = _run_child(["debootstrap", "--variant=minbase", suite, str(rootfs), mirror])
        if code != 0:
            tail = output.strip().splitlines()[-3:]
            raise EnvironmentProblem(f"debootstrap {suite} from {mirror} failed: {' | '.join(tail)}")
        # keep the image small and free of host traces
        for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for p in (rootfs / sub).glob("*"):
                if p.is_file():
                    p.unlink()
        slim_rootfs(rootfs)
        (rootfs / "etc/apt/sources.list").write_text(f"deb {mirror} {suite} main\n")
        tarball = Path(tmp) / "rootfs.tar"
        with tarfile.open(tarball, "w") as tar:
            tar.add(rootfs, arcname=".")
        labels = {f"{LABEL}.base.suite": suite, f"{LABEL}.base.mirror": mirror, f"{LABEL}.base.date": date,
                  f"{LABEL}.base.method": "debootstrap --variant=minbase"}
        changes = [f'LABEL {k}="{v}"' for k, v in labels.items()]
        changes += ['ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'CMD ["/bin/bash"]']
        log(f"docker import -> {ref}")
        image_id = engine.import_rootfs(tarball, BASE_REPO, suite, changes)
    log(f"{ref} built ({image_id[:19]}; mirror {mirror}, {date})")
    return image_id


_CHILDREN = set()  # the debootstrap processes running (build_base), for an interrupted parallel build to stop
_CHILDREN_LOCK = threading.Lock()


def _run_child(argv):
    """Run a command to its end; (exit status, its stdout and stderr). Registered in _CHILDREN while it runs."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    with _CHILDREN_LOCK:
        _CHILDREN.add(proc)
    try:
        output, _ = proc.communicate()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        with _CHILDREN_LOCK:
            _CHILDREN.discard(proc)
    return proc.returncode, output


def _stop_children():
    with _CHILDREN_LOCK:
        for proc in list(_CHILDREN):
            with contextlib.suppress(OSError):
                proc.terminate()


# what a base image and every package installed on it leave out (dpkg path-exclude, as Debian's slim images do):
# documentation but the copyright files, manual pages, info pages, translations; no step reads them
DPKG_EXCLUDE = ("usr/share/doc/*", "usr/share/man/*", "usr/share/info/*", "usr/share/locale/*", "usr/share/lintian/*")
DPKG_INCLUDE = ("usr/share/doc/*/copyright", "usr/share/locale/locale.alias")
# apt keeps neither downloaded packages nor its package caches (the same settings as Debian's official images)
APT_CLEAN = ('DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb '
             '/var/cache/apt/*.bin || true"; };\n'
             'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
             '/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };\n'
             'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n')


def slim_rootfs(rootfs):
    """Configure dpkg and apt in a debootstrapped root filesystem to keep no documentation, translations or
    package caches, and remove those debootstrap installed."""
    rootfs = Path(rootfs)
    lines = [f"path-exclude=/{p}" for p in DPKG_EXCLUDE] + [f"path-include=/{p}" for p in DPKG_INCLUDE]
    (rootfs / "etc/dpkg/dpkg.cfg.d").mkdir(parents=True, exist_ok=True)
    (rootfs / "etc/dpkg/dpkg.cfg.d/orchestrator-slim").write_text(
        "# orchestrator images: no documentation (but copyright files), manual pages or translations\n"
        + "\n".join(lines) + "\n")
    (rootfs / "etc/apt/apt.conf.d").mkdir(parents=True, exist_ok=True)
    (rootfs / "etc/apt/apt.conf.d/docker-clean").write_text(APT_CLEAN)
    for top in sorted({p.split("/*")[0] for p in DPKG_EXCLUDE}):
        for path in sorted((rootfs / top).rglob("*"), reverse=True):  # a folder after what it holds
            if path.is_dir() and not path.is_symlink():
                if not any(path.iterdir()):
                    path.rmdir()
            elif not any(fnmatch.fnmatch(path.relative_to(rootfs).as_posix(), p) for p in DPKG_INCLUDE):
                path.unlink()
    for path in (rootfs / "var/cache/apt").glob("*.bin"):
        path.unlink()


def _base_from_registry(engine, suite, ref, log):
    source = REGISTRY_BASES[suite]
    with tempfile.TemporaryDirectory(prefix="orchestrator-base-") as tmp:
        (Path(tmp) / "Dockerfile").write_text(f"FROM {source}\n")
        date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        labels = {f"{LABEL}.base.suite": suite, f"{LABEL}.base.method": f"registry {source}",
                  f"{LABEL}.base.date": date}
        client_build = engine.build(tmp, ref, labels=labels, log=log)
    return client_build


# -- stack images -----------------------------------------------------------------------------
@dataclass
class BuildOptions:
    ca_bundle: str = None  # extra CA bundle file; default: SSL_CERT_FILE / REQUESTS_CA_BUNDLE / PIP_CERT
    index_url: str = None  # default: PIP_INDEX_URL or pip config
    extra_index_urls: tuple = None
    wheelhouse: str = None  # folder of local wheels (e.g. a CPU-only torch)
    npm_registry: str = None  # default: npm's own configuration
    no_cache: bool = False
    build_base: bool = True  # build the base image first when it is missing
    mirror: str = None
    from_registry: bool = False
    verbose: bool = False  # the whole build log on screen (else: one progress line per stack, the log in a file)


class BuildProgress:
    """A stack build's output: every line into a log file; on screen one progress bar (tqdm) on a terminal, or the
    Dockerfile's steps as plain lines when stderr is not one. The last lines are there for a failure.

    `position`: the bar's line among those of builds running at once (build_stacks); such a bar is cleared when
    its build ends, and the build's "built" or "failed" line stays instead."""

    STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)")

    def __init__(self, stack, log, folder=None, tty=None, position=None):
        from orchestrator.cache import default_root

        folder = Path(folder) if folder else default_root() / "logs"
        folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.path = folder / f"build-{stack}-{stamp}-{os.getpid()}.log"
        self.stack, self.log, self.bar, self.position = stack, log, None, position
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.started = time.monotonic()
        self._file = open(self.path, "w")

    def __call__(self, line):
        self._file.write(line + "\n")
        self._file.flush()
        step = self.STEP.match(line.strip())
        if not step:
            return
        n, total, what = int(step.group(1)), int(step.group(2)), step.group(3)
        if self.tty:
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(total=total, desc=self.stack, unit="step", file=sys.stderr,
                                position=self.position, leave=self.position is None,
                                bar_format="{desc}: {bar:30} {n_fmt}/{total_fmt} steps {elapsed} {postfix}")
            self.bar.update(n - self.bar.n)
            self.bar.set_postfix_str(what[:50])
        else:
            self.log(f"{self.stack}: step {n}/{total} ({time.monotonic() - self.started:.0f} s) {what[:70]}")

    def tail(self, lines=40):
        if not self._file.closed:
            self._file.flush()
        return self.path.read_text(errors="replace").splitlines()[-lines:]

    def close(self):
        if self.bar is not None:
            self.bar.close()
        self._file.close()


def _alias_steps(stack):
    """[(source file, its path under steps/)] of the steps of every alias stack that runs in `stack`'s image. Refused
    in one line: a file name that the image already carries (the stack's own steps/, a shared helper it takes, or
    another alias's step), which one of them would silently replace."""
    taken = {f.name: f"images/{SHARED}/{f.name}" for f in stack.shared_files()}
    own = stack.path / "steps"
    taken.update({f.relative_to(own).as_posix(): f"images/{stack.name}/steps/{f.relative_to(own).as_posix()}"
                  for f in _hashed_files(own)} if own.is_dir() else {})
    found = []
    for alias in sorted(stack.aliases, key=lambda a: a.name):
        steps = alias.path / "steps"
        for f in (_hashed_files(steps) if steps.is_dir() else ()):
            rel = f.relative_to(steps).as_posix()
            if rel in taken:
                raise EnvironmentProblem(f"images/{alias.name}/steps/{rel} would replace {taken[rel]} in "
                                         f"the image of stack '{stack.name}', which both run in; rename one of them")
            taken[rel] = f"images/{alias.name}/steps/{rel}"
            found.append((f, rel))
    return found


def _prepare_context(stack, opts, tmp):
    ctx = Path(tmp) / "context"
    shutil.copytree(stack.path, ctx, ignore=shutil.ignore_patterns(*HASH_IGNORE, "*.pyc"))
    for source, rel in _alias_steps(stack):  # the steps of the stacks that run in this image, beside its own
        (ctx / "steps" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, ctx / "steps" / rel)
    build = ctx / "_build"
    (build / "wheelhouse").mkdir(parents=True)
    ca = Path(opts.ca_bundle) if opts.ca_bundle else machine.ca_bundle_from_env()
    if ca is not None:
        if not ca.is_file():
            raise InputError(ca, "CA bundle not found")
        shutil.copyfile(ca, build / "ca.crt")
    else:
        (build / "ca.crt").write_text("")
    if stack.recipe:
        shutil.copyfile(stack.dockerfile, ctx / "Dockerfile")
        (ctx / "site-packages").mkdir(exist_ok=True)  # the recipe lays the stack's site-packages/ (if any) over
    (build / "shared").mkdir()
    for f in stack.shared_files():
        shutil.copyfile(f, build / "shared" / f.name)
    if opts.wheelhouse:
        folders = [Path(opts.wheelhouse)]
    elif stack.wheelhouse:
        folders = machine.pip_find_links()
        if not folders:
            raise EnvironmentProblem(f"stack '{stack.name}' needs a wheelhouse ({stack.wheelhouse}): pass "
                                     "--wheelhouse DIR or configure pip's find-links")
    else:
        folders = []
    for wh in folders:
        if not wh.is_dir():
            raise InputError(wh, "wheelhouse is not a folder")
        for whl in wh.glob("*.whl"):
            dest = build / "wheelhouse" / whl.name
            try:
                os.link(whl, dest)
            except OSError:
                shutil.copyfile(whl, dest)
    return ctx


def build_args(opts, dockerfile_text=""):
    """Build arguments: package index URLs (pip; npm for Dockerfiles that take NPM_CONFIG_REGISTRY)."""
    index, extra = machine.pip_index_urls()
    index = opts.index_url or index
    extra = list(opts.extra_index_urls) if opts.extra_index_urls is not None else extra
    args = {}
    if index:
        args["PIP_INDEX_URL"] = index
    if extra:
        args["PIP_EXTRA_INDEX_URL"] = " ".join(extra)
    if "NPM_CONFIG_REGISTRY" in dockerfile_text:
        registry = opts.npm_registry or machine.npm_registry()
        if registry:
            args["NPM_CONFIG_REGISTRY"] = registry
    return args


def stack_labels(stack, base_id, content_hash=None):
    lock = (stack.path / stack.lock).read_bytes()
    return {
        f"{LABEL}.stack": stack.name,
        f"{LABEL}.content-hash": content_hash or stack.content_hash(),
        f"{LABEL}.lock-sha256": hashlib.sha256(lock).hexdigest(),
        f"{LABEL}.base-image": base_id,
        f"{LABEL}.built": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


@contextlib.contextmanager
def _build_lock(tag):
    """Hold the host's lock on building `tag` (a file in the cache folder's `locks/`, removed as it is released):
    processes that want the same image build it once, one after the other, and no build removes the stage of another
    one still running."""
    try:
        import fcntl
    except ImportError:  # not a POSIX host: no lock
        yield
        return
    from orchestrator.cache import default_root

    folder = default_root() / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (tag.replace("/", "_").replace(":", "_") + ".lock")
    while True:
        fh = open(path, "a")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX)
            if os.path.samestat(os.fstat(fh.fileno()), os.stat(path)):
                break
        except FileNotFoundError:
            pass
        except BaseException:
            fh.close()
            raise
        fh.close()  # the holder before removed the file while this process waited for it: lock the one there now
    try:
        yield
    finally:
        path.unlink(missing_ok=True)  # while still holding it, so no lock file stays behind
        fh.close()


def build_stack(engine, stack, opts=None, force=False, log=print, position=None, watch=None):
    """Build images/<stack> as orchestrator/<stack>:<content hash>; return (tag, image id).

    An unchanged stack folder is not rebuilt (unless `force`); a build of the same image by another process on this
    host is waited for. `position`: its progress bar's line (build_stacks); `watch`: called with each line of the
    engine's build output before it is shown (build_stacks).

    The stack's content hash is taken once, as the build starts: the tag, the labels and the removal of the build
    stage all use it, even when the stack's files change while it builds.

    An alias stack (stack.json "image") builds the image it runs in: that of the stack it names."""
    stack = stack.image_stack
    content_hash = stack.content_hash()
    with _build_lock(f"{stack.repository}:{content_hash[:12]}"):
        return _build_stack(engine, stack, content_hash, opts, force, log, position, watch)


def recipe_args(stack, dockerfile_text):
    """The build arguments a Dockerfile takes from stack.json: SMOKE_TEST, and for the python-venv recipe's bytecode
    step PRELOAD (the worker's preload list) and STACK_ENVIRONMENT (its "environment", as JSON). A stack whose image
    other stacks run in (aliases) gives the union of their preload lists and environments with its own: one image,
    one bytecode step, for every stack's workers and steps. An alias's are its host's."""
    stack = stack.image_stack
    args = {}
    if stack.smoke_test:
        args["SMOKE_TEST"] = stack.smoke_test
    if "PRELOAD" in dockerfile_text and stack.image_preload:
        args["PRELOAD"] = ",".join(stack.image_preload)
    if "STACK_ENVIRONMENT" in dockerfile_text and stack.image_environment:
        args["STACK_ENVIRONMENT"] = json.dumps(stack.image_environment, sort_keys=True)
    return args


def _build_stack(engine, stack, content_hash, opts, force, log, position=None, watch=None):
    opts = opts or BuildOptions()
    tag = f"{stack.repository}:{content_hash[:12]}"
    existing = engine.image(tag)
    if existing and not force:
        log(f"{tag} is up to date ({existing['id'][:19]})")
        return tag, existing["id"]
    base = base_ref(stack.base)
    base_info = engine.image(base)
    if base_info is None:
        if not opts.build_base:
            raise EnvironmentProblem(f"base image {base} is missing; run `orchestrator images base --suite {stack.base}`")
        build_base(engine, stack.base, mirror=opts.mirror, from_registry=opts.from_registry, log=log)
        base_info = engine.image(base)
    # CONTENT_HASH labels the build stage, which is removed once the image is built (remove_build_stages)
    dockerfile = stack.dockerfile.read_text()
    args = dict(build_args(opts, dockerfile), BASE_IMAGE=base, CONTENT_HASH=content_hash,
                **recipe_args(stack, dockerfile))
    log(f"building {tag} from {stack.path} (base {base})")
    started = time.monotonic()
    progress = None if opts.verbose else BuildProgress(stack.name, log, position=position)
    sink = _build_output(stack, log, progress, position, watch)
    try:
        with tempfile.TemporaryDirectory(prefix=f"orchestrator-build-{stack.name}-") as tmp:
            ctx = _prepare_context(stack, opts, tmp)
            image_id = engine.build(ctx, tag, buildargs=args, labels=stack_labels(stack, base_info["id"], content_hash),
                                    nocache=opts.no_cache, log=sink)
    except BaseException as exc:
        if progress is not None:
            progress.close()
            if isinstance(exc, BuildFailed):
                for line in progress.tail(40):
                    log(f"  {line}")
                log(f"{stack.name}: the build failed; full log: {progress.path}")
                exc.build_log = str(progress.path)
        if isinstance(exc, KeyboardInterrupt):
            # Ctrl-C or SIGTERM (errors.Terminated): the engine has stopped the build (Engine.build); what it
            # committed of the build stage meanwhile goes as after a finished build, so no half-made image stays
            # (best effort: an engine going away with the host must not turn the interrupt into a traceback)
            with contextlib.suppress(Exception):
                remove_build_stages(engine, stack, log, content_hash)
        raise
    if progress is not None:
        progress.close()
    where = f"; log: {progress.path}" if progress is not None else ""
    log(f"{tag} built in {time.monotonic() - started:.0f} s ({image_id[:19]}){where}")
    remove_build_stages(engine, stack, log, content_hash)
    return tag, image_id


def _build_output(stack, log, progress, position, watch):
    """Where the engine's build output goes: the progress (a bar or step lines), else (--verbose) the log, each line
    named by its stack when builds run at once (a `position`); `watch` sees it first."""
    def named(text):
        for line in text.splitlines():
            log(f"{stack.name}: {line}")

    shown = progress or (named if position is not None else log)
    if watch is None:
        return shown

    def watched(text):
        watch(text)
        shown(text)

    return watched


def remove_build_stages(engine, stack, log=print, content_hash=None):
    """Remove what a build of the stack's current content (or of `content_hash`) leaves untagged: its build stage
    (labelled with the content hash by the Dockerfile; it holds the installed packages a second time) and an earlier
    image of the same tag that a forced rebuild replaced. Images of other stacks, other content and tagged images
    stay."""
    removed = engine.prune_images({f"{LABEL}.content-hash": content_hash or stack.content_hash()})
    if removed["images"]:
        log(f"{stack.name}: removed its build stage ({removed['images']} untagged images, "
            f"{removed['bytes'] / 1e6:.0f} MB)")
    return removed


def images_of(stacks):
    """The stacks that build the images `stacks` run in, each once, in order: an alias stack (stack.json "image")
    stands for the stack it names."""
    return list({s.image_stack.name: s.image_stack for s in stacks}.values())


def build_stacks(engine, stacks, opts=None, force=False, jobs=2, log=print):
    """Build several stacks (`images build`), at most `jobs` at once; return [(tag, image id)] of each image once, in
    their order (an alias stack, stack.json "image", builds the image it runs in: that of the stack it names).

    The base images they need are made first, each suite once (two suites at once). Builds then run in threads,
    each with its own progress bar line (or its plain "stack: step n/m" lines). Two stacks of one Dockerfile (the
    python-venv recipe) never start together: the second waits until the first has passed the first stage they
    share (their runtime), which it then takes from the layer cache; started together, each would build its own copy
    of it. A failed build does not stop the others. When builds failed, each is said in one line with its log, and
    the error raised is the failure itself when one failed, else BuildsFailed (the first one's exit code).
    Interrupted, the running builds are stopped and their stages removed before the interrupt goes on."""
    opts = opts or BuildOptions()
    say = _Screen(log, False if opts.verbose else None)
    stacks = list(stacks)
    for stack in stacks:
        if stack.image:
            say(f"{stack.name}: its steps run in the image of stack '{stack.image}', {stack.tag()}")
    stacks = images_of(stacks)
    results, failures = {}, {}
    todo = [s for s in stacks if force or engine.image(s.tag()) is None]
    for stack in stacks:
        if stack not in todo:
            results[stack.name] = build_stack(engine, stack, opts, log=say)  # "is up to date"
    if opts.build_base:  # (else each missing base fails its stacks' builds, as build_stack says)
        lost = _ensure_bases(engine, sorted({s.base for s in todo}), opts, jobs, say)
        for stack in [s for s in todo if s.base in lost]:
            failures[stack.name] = lost[stack.base]
            todo.remove(stack)
    if jobs <= 1 or len(todo) <= 1:
        for stack in todo:
            try:
                results[stack.name] = build_stack(engine, stack, opts, force=force, log=say)
            except OrchestratorError as exc:
                failures[stack.name] = exc
    else:
        _build_parallel(engine, todo, opts, force, jobs, say, results, failures)
    if failures:
        failed = [(s.name, failures[s.name]) for s in stacks if s.name in failures]
        if len(stacks) > 1:
            say(f"{len(failed)} of {len(stacks)} stack builds failed:")
            for name, exc in failed:
                where = getattr(exc, "build_log", None)
                say(f"  {name}: {one_line(exc)}" + (f" (log: {where})" if where else ""))
        raise failed[0][1] if len(failed) == 1 else BuildsFailed(failed)
    return [results[s.name] for s in stacks]


class _Screen:
    """The log of builds running at once: one line at a time, and on a terminal written around the progress bars
    (tqdm clears them, the line is written, they are drawn again)."""

    def __init__(self, log, tty=None):
        self.log, self.lock = log, threading.RLock()
        self.tty = sys.stderr.isatty() if tty is None else tty
        self.muted = False  # once interrupted: the stopped builds' lines are not shown

    def __call__(self, line):
        with self.lock:
            if self.muted:
                return
            if self.tty:
                from tqdm import tqdm

                with tqdm.external_write_mode(file=sys.stderr):
                    self.log(line)
            else:
                self.log(line)


def _start(target, calls, name):
    """Run target(*args) for each args of `calls`, each in a thread of its own; the Events set as each ends. (Waiting
    on these, not on Thread.join: a join interrupted by Ctrl-C can take a thread that still runs for ended.)"""
    ends = []
    for i, args in enumerate(calls):
        end = threading.Event()

        def run(args=args, end=end):
            try:
                target(*args)
            finally:
                end.set()

        threading.Thread(target=run, name=f"{name}-{i}", daemon=True).start()
        ends.append(end)
    return ends


def _wait_for(ends, seconds=None):
    """Wait until every one of `ends` is set (or `seconds` passed: False); Ctrl-C and SIGTERM come through."""
    deadline = None if seconds is None else time.monotonic() + seconds
    for end in ends:
        while not end.wait(0.2):
            if deadline is not None and time.monotonic() > deadline:
                return False
    return True


STOP_WAIT = 60  # seconds an interrupted build_stacks waits for its builds to stop and clean up


def _ensure_bases(engine, suites, opts, jobs, log):
    """Make the missing base images of `suites`, each once, up to `jobs` at once; {suite: the error} of those that
    failed."""
    missing = [suite for suite in suites if engine.image(base_ref(suite)) is None]
    lost = {}

    def make(suite):
        try:
            build_base(engine, suite, mirror=opts.mirror, from_registry=opts.from_registry, log=log)
        except OrchestratorError as exc:
            lost[suite] = exc
            log(f"base {suite}: {one_line(exc)}")

    if jobs <= 1 or len(missing) <= 1:
        for suite in missing:
            make(suite)
        return lost
    ends = _start(make, [(suite,) for suite in missing], "base")
    try:
        _wait_for(ends)
    except BaseException:
        log.muted = True
        _stop_children()
        with contextlib.suppress(BaseException):
            _wait_for(ends, STOP_WAIT)
        raise
    return lost


def _build_parallel(engine, todo, opts, force, jobs, say, results, failures):
    """build_stacks' threads: `jobs` workers take the stacks in turn; fills `results` and `failures`."""
    queue = list(todo)
    shared = {s.dockerfile for s in todo if sum(t.dockerfile == s.dockerfile for t in todo) > 1}
    gates = {}  # a shared Dockerfile -> set once its first build has passed its first stage (or ended)
    containers = {}  # stack -> the build's running step containers (to stop them when interrupted)
    stop = threading.Event()
    turn = threading.Condition()

    def take():
        for stack in queue:
            gate = gates.get(stack.dockerfile)
            if gate is None or gate.is_set():
                queue.remove(stack)
                if gate is None and stack.dockerfile in shared:
                    gates[stack.dockerfile] = gate = threading.Event()
                    return stack, gate
                return stack, None
        return None, None

    def watcher(stack, gate):
        froms, running = [0], containers.setdefault(stack.name, set())

        def watch(text):
            if stop.is_set():
                raise KeyboardInterrupt  # in the engine's build loop: it stops that build (Engine.build)
            with turn:
                for found in STEP_CONTAINER.finditer(text):
                    (running.add if found.group(1) else running.discard)(found.group(2))
            for line in text.splitlines():
                step = BuildProgress.STEP.match(line.strip())
                if gate is not None and step and step.group(3).upper().startswith("FROM "):
                    froms[0] += 1
                    if froms[0] == 2:  # the second stage begins: the first one is in the layer cache
                        gate.set()
                        with turn:
                            turn.notify_all()
        return watch

    def work(slot):
        while True:
            with turn:
                stack, gate = take()
                while stack is None and queue and not stop.is_set():
                    turn.wait(0.5)
                    stack, gate = take()
            if stack is None or stop.is_set():
                return
            content_hash = stack.content_hash()
            try:
                results[stack.name] = build_stack(engine, stack, opts, force=force, log=say, position=slot,
                                                  watch=watcher(stack, gate))
            except BaseException as exc:
                failures[stack.name] = exc
                if stop.is_set() and not isinstance(exc, KeyboardInterrupt):  # its step killed from outside
                    with contextlib.suppress(Exception):
                        remove_build_stages(engine, stack, say, content_hash)
            finally:
                if gate is not None:
                    gate.set()
                with turn:
                    turn.notify_all()

    ends = _start(work, [(slot,) for slot in range(min(jobs, len(todo)))], "build")
    try:
        _wait_for(ends)
    except BaseException:
        # interrupted: each build stops at its next line of output (watch), and the step a build is running is
        # removed here so that its output comes now; then each removes its build stage, as a single build does
        stop.set()
        say.muted = True
        with turn:
            steps = [container for running in containers.values() for container in running]
        for container in steps:
            with contextlib.suppress(Exception):
                engine.remove(container)
        with contextlib.suppress(BaseException):
            _wait_for(ends, STOP_WAIT)
        raise
    for name, exc in list(failures.items()):
        if not isinstance(exc, OrchestratorError):
            raise exc  # not a build's failure (a bug): as a single build would raise it


def ensure_image(engine, stack, build_if_missing=True, opts=None, log=print):
    """The (tag, id) of the stack's current image, building it when missing and allowed."""
    tag = stack.tag()
    info = engine.image(tag)
    if info:
        return tag, info["id"]
    if not build_if_missing:
        raise EnvironmentProblem(f"image {tag} for stack '{stack.name}' is missing; run `orchestrator images build"
                                 f" {stack.name}` or `orchestrator images load FILE`")
    try:
        return build_stack(engine, stack, opts, log=log)
    except EnvironmentProblem as exc:
        raise EnvironmentProblem(f"image {tag} for stack '{stack.name}' is missing and cannot be built: {exc}") from exc


def ready(engine, names, build_missing=True, opts=None, log=None):
    """{stack: runner.StackImage} for the named stacks, each image found or built (ensure_image). Containers an
    earlier run of this host left behind (it lost its engine, or was killed) are removed first."""
    from orchestrator.runner import StackImage, reap_orphans

    reap_orphans(engine)
    found, ids = {}, {}  # ids: tag -> image id, each image found (or built) once for the stacks that run in it
    for name in names:
        if name not in found:
            stack = get_stack(name)
            tag = stack.tag()
            if tag not in ids:
                _, ids[tag] = ensure_image(engine, stack, build_if_missing=build_missing, opts=opts,
                                           log=log or (lambda _line: None))
            found[name] = StackImage.of(stack, tag, ids[tag])
    return found


def list_images(engine, root=None):
    """One row per stack (stacks sharing an image show the same tag and id), then the base images."""
    rows = []
    for name, stack in discover_stacks(root).items():
        tag = stack.tag()
        info = engine.image(tag)
        rows.append({"stack": name, "tag": tag, "id": info["id"][7:19] if info else "-",
                     "size_mb": round(info["size"] / 1e6) if info else None, "built": bool(info)})
    for suite in SUITES:
        info = engine.image(base_ref(suite))
        if info:
            rows.append({"stack": f"(base {suite})", "tag": base_ref(suite), "id": info["id"][7:19],
                         "size_mb": round(info["size"] / 1e6), "built": True})
    return rows


def image_totals(engine, root=None):
    """The built stack images' bytes: `nominal`, the sum of their sizes (what `images list` shows per image, the
    shared base and runtime layers counted in each), and `on_disk`, each layer counted once; `images`, how many
    images they are. An image several stacks run in (stack.json "image") is counted once."""
    nominal, layers, count = 0, {}, 0
    for stack in images_of(discover_stacks(root).values()):
        info = engine.image(stack.tag())
        if info:
            nominal += info["size"]
            count += 1
            layers.update(engine.layers(stack.tag()))
    return {"nominal": nominal, "on_disk": sum(layers.values()), "images": count}


class Progress:
    """Bytes moved, said every few seconds and at the end: 'images save: 1.2 GiB, 48 MB/s, 25 s'."""

    def __init__(self, what, log, every=5.0):
        self.what, self.log, self.every = what, log or (lambda _line: None), every
        self.done, self.started = 0, time.monotonic()
        self._said = self.started

    def __call__(self, n):
        self.done += n
        now = time.monotonic()
        if now - self._said >= self.every:
            self._said = now
            self.log(self.line(now))

    def line(self, now=None):
        seconds = max((now or time.monotonic()) - self.started, 1e-6)
        return (f"{self.what}: {self.done / 2 ** 30:.2f} GiB, {self.done / seconds / 1e6:.0f} MB/s, "
                f"{seconds:.0f} s")

    def finish(self):
        self.log(self.line())


COMPRESSED = (".gz", ".tgz")  # `images save X.tar.gz` compresses (gzip level 1: fast, about half the size)


def save_images(engine, path, stack_names=(), root=None, log=None):
    stacks = discover_stacks(root)
    names = list(stack_names) or list(stacks)
    refs = []
    for name in names:
        if name not in stacks:
            raise UsageError(f"unknown stack '{name}'; stacks: {', '.join(stacks)}")
        tag = stacks[name].tag()
        if engine.image(tag) is None:
            raise EnvironmentProblem(f"image {tag} is not built; run `orchestrator images build {name}` first")
        if tag not in refs:  # stacks sharing an image: saved once
            refs.append(tag)
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    progress = Progress(f"images save ({path.name})", log)
    try:
        if path.name.endswith(COMPRESSED):
            with open(partial, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1, mtime=0) as fh:
                engine.save(refs, fh, progress=progress)
        else:
            with open(partial, "wb") as fh:
                engine.save(refs, fh, progress=progress)
        progress.finish()
        partial.replace(path)
    finally:
        if partial.exists():
            partial.unlink()
    return refs


def load_images(engine, path, log=None):
    """Load a tar (or .tar.gz) written by save_images; the engine decompresses."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    progress = Progress(f"images load ({path.name})", log)
    with open(path, "rb") as fh:
        loaded = engine.load(fh, progress=progress)
    progress.finish()
    return loaded
