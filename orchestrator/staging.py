"""Atomic output: everything is written into a staging folder beside OUTPUT_DIR and moved into place only when
complete. A failure at any point leaves no half-written OUTPUT_DIR (an old one stays untouched until the commit)."""

import os
import shutil
import uuid
from pathlib import Path

from orchestrator.errors import UsageError


def check_place(out, inputs):
    """Refuse an OUTPUT_DIR that cannot be written as a whole beside itself, before anything is made: one under a
    file, one in a read-only folder, one that is an input, lies in an input folder or holds an input."""
    try:
        str(out).encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"{out}: its name holds bytes that are not UTF-8, which the Docker engine cannot mount: "
                         "choose another OUTPUT_DIR") from None
    existing = out.parent
    while not os.path.lexists(existing):
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{out}: cannot be made: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        read_only = hasattr(os, "statvfs") and os.statvfs(existing).f_flag & getattr(os, "ST_RDONLY", 1)
        raise UsageError(f"{out}: cannot write there: {existing} is "
                         f"{'on a read-only file system' if read_only else 'not writable'}")
    real = out.resolve()
    for given in inputs:
        path = Path(given).resolve()
        if real == path:
            raise UsageError(f"{out}: is the input {given}; choose another OUTPUT_DIR")
        if path in real.parents:
            raise UsageError(f"{out}: lies inside the input {given}; choose an OUTPUT_DIR outside it")
        if real in path.parents:
            raise UsageError(f"{out}: holds the input {given}; replacing it would delete the input: choose "
                             "another OUTPUT_DIR")


class Staging:
    """`with Staging(output_dir, force) as stage:` write into `stage.path`, then `stage.commit()`; leaving the block
    without a commit removes the staging folder."""

    def __init__(self, output_dir, force=False, work_root=None, inputs=()):
        """`inputs`: the host files and folders the conversion reads; OUTPUT_DIR may be none of them, lie in none
        of them, nor hold one (replacing it would delete the input)."""
        self.out = Path(output_dir).absolute()
        if self.out.exists() and not self.out.is_dir():
            raise UsageError(f"{self.out}: exists and is not a folder")
        if self.out.is_dir() and any(self.out.iterdir()) and not force:
            raise UsageError(f"{self.out}: exists and is not empty; pass --force to replace it")
        check_place(self.out, inputs)
        self.path = self.out.parent / f".{self.out.name}.partial-{uuid.uuid4().hex[:8]}"
        self.committed = False
        # a batch's jobs share one work root, so that its warm workers (orchestrator/workers.py) see every job's
        self._work = Path(work_root) / self.path.name if work_root else self.path / ".work"

    @property
    def work(self):
        """Scratch space for the steps: inside the staging folder, or in the batch's work root (removed before the
        commit either way)."""
        return self._work

    def __enter__(self):
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.path.mkdir()
        return self

    def __exit__(self, *exc):
        for folder in (self.path, self._work):
            if folder.exists():
                shutil.rmtree(folder, ignore_errors=True)
        return False

    def place(self, src, name):
        """Move a file or folder into the staging folder as `name`; return its new path."""
        dest = self.path / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(src), str(dest))
        return dest

    def commit(self):
        """Move the finished staging folder into place; replace an old OUTPUT_DIR only at the very end."""
        shutil.rmtree(self.work, ignore_errors=True)
        trash = None
        if self.out.exists():
            trash = self.out.parent / f".{self.out.name}.old-{uuid.uuid4().hex[:8]}"
            self.out.rename(trash)
        self.path.rename(self.out)
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
        self.committed = True
        return self.out
