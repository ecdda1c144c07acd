"""Atomic output: everything is written into a staging folder beside OUTPUT_DIR and moved into place only when
complete. A failure at any point leaves no half-written OUTPUT_DIR (an old one stays untouched until the commit).
One conversion at a time writes an OUTPUT_DIR: a lock file beside it (`.NAME.lock`, flock) refuses a second one
while the first runs, and an interrupt that arrives during the commit acts only once the commit is whole."""

import contextlib
import fcntl
import os
import shutil
import signal
import threading
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
        self.force = force
        self._refuse_existing()
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
        self._lock = self._take_lock()
        self.path.mkdir()
        return self

    def _take_lock(self):
        """Hold `.NAME.lock` beside OUTPUT_DIR for the whole conversion, or refuse: another one is writing it."""
        lock_path = self.out.parent / f".{self.out.name}.lock"
        while True:
            fh = open(lock_path, "a+")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip()
                fh.close()
                raise UsageError(f"{self.out}: another conversion is writing it"
                                 f"{f' (pid {holder})' if holder else ''}; wait for it or choose another OUTPUT_DIR"
                                 ) from None
            try:
                if os.stat(lock_path).st_ino == os.fstat(fh.fileno()).st_ino:
                    break  # the file still under that name: the lock is ours
            except FileNotFoundError:
                pass
            fh.close()  # its holder unlinked it as we took it: take the one under the name now
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        # checked again under the lock: the other conversion may have committed since the first check
        try:
            self._refuse_existing()
        except UsageError:
            self._drop_lock(fh, lock_path)
            raise
        return fh, lock_path

    def _refuse_existing(self):
        if self.out.is_dir() and any(self.out.iterdir()) and not self.force:
            raise UsageError(f"{self.out}: exists and is not empty; pass --force to replace it")

    @staticmethod
    def _drop_lock(fh, lock_path):
        with contextlib.suppress(OSError):
            lock_path.unlink()  # unlinked while still held: a newcomer locks a fresh file, never this one
        fh.close()

    def __exit__(self, *exc):
        for folder in (self.path, self._work):
            if folder.exists():
                shutil.rmtree(folder, ignore_errors=True)
        self._drop_lock(*self._lock)
        return False

    def place(self, src, name):
        """Move a file or folder into the staging folder as `name`; return its new path."""
        dest = self.path / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(src), str(dest))
        return dest

    def commit(self):
        """Move the finished staging folder into place; replace an old OUTPUT_DIR only at the very end. SIGINT and
        SIGTERM wait for the commit to be whole (signals_deferred)."""
        shutil.rmtree(self.work, ignore_errors=True)
        with signals_deferred():
            trash = None
            if self.out.exists():
                trash = self.out.parent / f".{self.out.name}.old-{uuid.uuid4().hex[:8]}"
                self.out.rename(trash)
            self.path.rename(self.out)
            self.committed = True
            if trash is not None:
                shutil.rmtree(trash, ignore_errors=True)
        return self.out


@contextlib.contextmanager
def signals_deferred(signals=(signal.SIGINT, signal.SIGTERM)):
    """Inside the block, SIGINT and SIGTERM are noted, not acted on; when it ends the first one noted is handed to
    the handler in force before, at once (called here: a signal sent again would reach whichever thread the kernel
    picks, and be acted on later). Only the main thread receives signals; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted = []
    before = {sig: signal.signal(sig, lambda number, frame: noted.append(number)) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
        if noted:
            handler = before[noted[0]]
            if callable(handler):
                handler(noted[0], None)  # default_int_handler raises KeyboardInterrupt; cli's raises Terminated
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), noted[0])
