"""The conversion cache: a content-addressed store of step outputs in the user's cache folder.

A step's key is the sha256 of everything that decides what it writes: the orchestrator's version, the image id it
runs in, its command (script, options and arguments, in container paths), its environment, and the content of
every read-only input mounted into it (by container path, so the host's temporary folders do not matter). A
repeated conversion finds its steps and its verification runs under the same keys and gets their outputs back
without starting a container; any change to any part of the key is a miss. Only steps that exited 0 are stored.

The cache is an engine decorator (CachedEngine): the pipeline runs steps as always, and the one place that talks
to Docker stays engine.py. Entries: ROOT/entries/KEY/{out/, entry.json}; written to a temporary folder and
renamed, so a reader never sees half an entry. The folder: $ORCHESTRATOR_CACHE_DIR, else $XDG_CACHE_HOME/orchestrator,
else ~/.cache/orchestrator. Size limit: $ORCHESTRATOR_CACHE_MAX (e.g. 5G; default 5G), the least recently used
entries go first.
"""

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from orchestrator import __version__, protocol
from orchestrator.engine import RunResult
from orchestrator.errors import UsageError

DEFAULT_MAX = "5G"
UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
AGES = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_size(text):
    """'5G', '500M', '1024' -> bytes."""
    text = str(text).strip().upper().rstrip("B")
    unit = text[-1:] if text[-1:].isalpha() and text[-1:] in UNITS else ""
    try:
        value = float(text[:-1] if unit else text)
    except ValueError:
        raise UsageError(f"'{text}' is not a size (e.g. 500M, 5G)") from None
    return int(value * UNITS[unit])


def size_setting(variable, default):
    """A size limit from environment variable `variable` (e.g. ORCHESTRATOR_MAX_UNPACK), else `default`; bytes."""
    return parse_size(os.environ.get(variable) or default)


def parse_age(text):
    """'7d', '12h', '30m', '90s', '2w' -> seconds."""
    text = str(text).strip().lower()
    try:
        return float(text[:-1]) * AGES[text[-1]] if text[-1:] in AGES else float(text)
    except (ValueError, IndexError):
        raise UsageError(f"'{text}' is not an age (e.g. 7d, 12h, 30m)") from None


def default_root():
    if os.environ.get("ORCHESTRATOR_CACHE_DIR"):
        return Path(os.environ["ORCHESTRATOR_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "orchestrator"


def _file_digest(path, h):
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)


def content_digest(path):
    """sha256 of a file's bytes, or of a folder's tree (relative names, file bytes, symlink targets)."""
    path = Path(path)
    h = hashlib.sha256()
    if path.is_file():
        _file_digest(path, h)
        return h.hexdigest()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files) + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            full = os.path.join(root, name)
            h.update(os.path.relpath(full, path).encode() + b"\0")
            if os.path.islink(full):
                h.update(b"link:" + os.readlink(full).encode())
            elif os.path.isfile(full):
                _file_digest(full, h)
            h.update(b"\0")
    return h.hexdigest()


class Cache:
    def __init__(self, root=None, max_bytes=None):
        self.root = Path(root) if root else default_root()
        self.max_bytes = max_bytes if max_bytes is not None else parse_size(
            os.environ.get("ORCHESTRATOR_CACHE_MAX", DEFAULT_MAX))

    @property
    def entries(self):
        return self.root / "entries"

    def key(self, spec, image_id):
        """The key of a container run (engine.ContainerSpec) in an image of this id."""
        inputs = sorted((m.target, content_digest(m.source)) for m in spec.mounts if m.read_only)
        env = sorted((k, v) for k, v in spec.environment.items())
        doc = {"orchestrator": __version__, "image_id": image_id, "command": list(spec.command), "env": env,
               "inputs": inputs}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()

    def get(self, key, out_dir):
        """Copy the entry's outputs into out_dir (which exists and is empty); return its record, or None."""
        entry = self.entries / key
        record_path = entry / "entry.json"
        if not record_path.is_file():
            return None
        try:
            record = json.loads(record_path.read_text())
            shutil.copytree(entry / "out", out_dir, dirs_exist_ok=True, symlinks=True)
        except (OSError, ValueError):  # e.g. pruned meanwhile: the step runs for real, into an empty folder again
            for child in Path(out_dir).iterdir():
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
            return None
        now = time.time()
        os.utime(record_path, (now, now))  # last used: what the size limit evicts by
        return record

    def put(self, key, out_dir, record):
        """Store a copy of out_dir under key (atomic; a key already present is kept)."""
        self.entries.mkdir(parents=True, exist_ok=True)
        if (self.entries / key).exists():
            return
        tmp = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=self.entries))
        try:
            shutil.copytree(out_dir, tmp / "out", symlinks=True)
            size = sum(f.stat().st_size for f in (tmp / "out").rglob("*") if f.is_file())
            (tmp / "entry.json").write_text(json.dumps(dict(record, key=key, size=size, created=time.time())))
            os.rename(tmp, self.entries / key)
        except OSError:
            pass  # another process stored it first, or the disk is full: the cache is only an optimisation
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.prune(max_bytes=self.max_bytes)

    def list(self):
        """The entries, newest use first: key, step, image, size, created, last used."""
        rows = []
        if not self.entries.is_dir():
            return rows
        for entry in self.entries.iterdir():
            record_path = entry / "entry.json"
            if entry.name.startswith(".") or not record_path.is_file():
                continue
            try:
                record = json.loads(record_path.read_text())
            except (OSError, ValueError):
                continue
            rows.append({"key": entry.name, "step": record.get("step", ""), "image": record.get("image", ""),
                         "size": record.get("size", 0), "created": record.get("created", 0),
                         "used": record_path.stat().st_mtime})
        return sorted(rows, key=lambda r: -r["used"])

    def prune(self, older_than=None, max_bytes=None):
        """Remove entries not used for `older_than` seconds, then the least recently used until the rest fit in
        max_bytes. Returns (entries removed, bytes freed)."""
        rows, removed, freed = self.list(), 0, 0
        now = time.time()
        keep = []
        for row in rows:
            if older_than is not None and now - row["used"] > older_than:
                removed, freed = removed + 1, freed + row["size"]
                shutil.rmtree(self.entries / row["key"], ignore_errors=True)
            else:
                keep.append(row)
        if max_bytes is not None:
            total = sum(r["size"] for r in keep)
            for row in reversed(keep):  # least recently used first
                if total <= max_bytes:
                    break
                total -= row["size"]
                removed, freed = removed + 1, freed + row["size"]
                shutil.rmtree(self.entries / row["key"], ignore_errors=True)
        return removed, freed


class CachedEngine:
    """A ContainerEngine that answers a step run from the cache when its key matches, and stores what a real
    run wrote; everything else goes to the engine it wraps."""

    def __init__(self, engine, cache):
        self.inner, self.cache = engine, cache

    def __getattr__(self, name):  # info, image, build, import_rootfs, save, load
        return getattr(self.inner, name)

    @contextlib.contextmanager
    def session(self, rw=(), ro=()):
        """The wrapped engine's session (warm workers), behind this cache."""
        with self.inner.session(rw, ro) as inner:
            yield CachedEngine(inner, self.cache)

    def run(self, spec, log=None, watch=None):
        out = next((m for m in spec.mounts if not m.read_only and m.target == protocol.OUT_DIR), None)
        info = self.inner.image(spec.image) if out is not None else None
        if info is None:
            return self.inner.run(spec, log=log, watch=watch)
        key = self.cache.key(spec, info["id"])
        record = self.cache.get(key, out.source)
        if record is not None:
            if log:
                log(f"cached (key {key[:12]}): outputs of an identical run")
            return RunResult(0, record.get("stdout", ""), record.get("stderr", ""), 0.0, cached=True,
                             cached_seconds=record.get("seconds"))
        result = self.inner.run(spec, log=log, watch=watch)
        if result.exit_code == 0 and not result.timed_out:
            self.cache.put(key, out.source, {"step": spec.name_hint, "image": spec.image, "image_id": info["id"],
                                             "seconds": round(result.seconds, 2), "stdout": result.stdout[-4000:],
                                             "stderr": result.stderr[-4000:]})
        return replace(result, cached=False)
