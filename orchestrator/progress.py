"""What a conversion shows while it runs. The pipeline logs plain lines: a phase line when a step, a verification
run or an attempt starts ("step 1/2: ...", "verify: ...", "attempt: ..."), and the running container's output
prefixed with "[step] ". This sink shows them:

- on a terminal: each finished phase as one line with its time, the running one as a live status line with its
  elapsed time (tqdm), and the containers' output only with --verbose; everything goes to a log file whose path is
  printed when the conversion fails (the error itself carries the failing step's last lines);
- otherwise (CI logs, pipes): every line as it comes, and each phase's time when it ends.
"""

import datetime
import os
import re
import sys
import threading
import time
from pathlib import Path

PHASE = re.compile(r"^(step \d+/\d+|verify|attempt): ")
TICK_SECONDS = 0.5


def _seconds(value):
    return f"{value:.1f} s" if value < 100 else f"{value / 60:.1f} min"


class ConversionProgress:
    def __init__(self, stream=None, tty=None, verbose=False, folder=None):
        from orchestrator.cache import default_root

        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.verbose = verbose
        folder = Path(folder) if folder else default_root() / "logs"
        folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        self.path = folder / f"convert-{stamp}-{os.getpid()}.log"
        self._file = open(self.path, "w")
        self._lock = threading.Lock()
        self.phase, self.phase_started = None, None
        self._bar, self._ticker, self._stop = None, None, threading.Event()

    # -- the log sink ------------------------------------------------------------------------------------------
    def __call__(self, line):
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()
            if PHASE.match(line):
                self._end_phase()
                self.phase, self.phase_started = line, time.monotonic()
                if self.tty:
                    self._show_status()
                else:
                    self._print(line)
            elif not self.tty or self.verbose:
                self._print(line)

    def close(self, failed=False):
        """End the last phase; on failure say where the whole log is."""
        with self._lock:
            self._end_phase()
            self._stop.set()
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            self._file.close()
        if failed and self.tty:  # elsewhere every line was shown already
            print(f"the conversion's full log: {self.path}", file=self.stream, flush=True)

    # -- internals ---------------------------------------------------------------------------------------------
    def _print(self, text):
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def _end_phase(self):
        if self.phase is None:
            return
        took = _seconds(time.monotonic() - self.phase_started)
        self._file.write(f"({took})\n")
        self._print(f"{self.phase} ({took})" if self.tty else f"  finished in {took}")
        self.phase = None
        if self._bar is not None:
            self._bar.set_description_str("")

    def _show_status(self):
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=None, file=self.stream, leave=False, bar_format="{desc}")
            self._ticker = threading.Thread(target=self._tick, daemon=True, name="progress")
            self._ticker.start()
        self._refresh()

    def _refresh(self):
        if self._bar is not None and self.phase is not None:
            self._bar.set_description_str(f"{self.phase[:100]} ... {_seconds(time.monotonic() - self.phase_started)}")

    def _tick(self):
        while not self._stop.wait(TICK_SECONDS):
            with self._lock:
                self._refresh()
