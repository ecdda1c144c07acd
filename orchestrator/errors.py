"""Every error the orchestrator raises on purpose, with the exit code the CLI maps it to.

Exit codes (documented in README):
  0 success, 2 bad usage or bad input, 3 a step failed, 4 verification failed,
  5 environment problem (no engine, image missing and cannot be built).
"""

import re

# lines converters log on their way (absl/glog "W0000 00:00:...", Python warnings, logging prefixes): never an
# error line, however they end
LOG_LINE = re.compile(r"^(?:[IWEF]\d{4} \d\d:\d\d:\d\d|\[?(?:INFO|WARNING|WARN|DEBUG)\]?[: ]|WARNING:|INFO:|"
                      r"\S*Warning: |warnings\.warn\(|\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d)")
# the exception line that ends a Python traceback ("ValueError: ...", "tensorflow....InvalidArgumentError: ..."),
# or Node's "Error: ..."
EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_][\w]*\.)*(?:[A-Z]\w*)?(?:Error|Exception|Exit|Interrupt)(?::|$)")


def error_line(text):
    """The line of a failed run's stderr that says what went wrong: the step SDK's last "ERROR: " line, else the
    last exception line, else the last line that is not a log line; "" when there is none."""
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    for wanted in (lambda ln: ln.startswith("ERROR: "), EXCEPTION_LINE.match, lambda ln: not LOG_LINE.match(ln)):
        found = [ln for ln in lines if wanted(ln)]
        if found:
            return found[-1]
    return ""


class OrchestratorError(Exception):
    """Base class: `str(err)` is the one line shown to the user."""

    exit_code = 1


class UsageError(OrchestratorError):
    """Bad command-line usage: unknown format, unknown option, impossible route."""

    exit_code = 2


class MissingOption(UsageError):
    """A route cannot do without an option that was not given (the conversion names its input in the message)."""


class InputError(OrchestratorError):
    """A model, calibration or sample file that is missing or unusable.

    The message names the file and the cause.
    """

    exit_code = 2

    def __init__(self, path, cause):
        self.path = str(path)
        self.cause = cause
        super().__init__(f"{self.path}: {cause}")


class StepFailed(OrchestratorError):
    """A container step exited non-zero. Carries what is needed to reproduce and diagnose it."""

    exit_code = 3

    def __init__(self, step, image, exit_status, stderr_tail, command=None, reason=None):
        self.step = step
        self.image = image
        self.exit_status = exit_status
        self.stderr_tail = stderr_tail
        self.command = command
        self.reason = reason
        super().__init__(self._line())

    def last_line(self):
        """The line of its stderr that says what went wrong (error_line: never a log line)."""
        return error_line(self.stderr_tail)

    def _line(self):
        what = self.reason or f"exit status {self.exit_status}"
        tail = self.last_line().removeprefix("ERROR: ")
        return f"step '{self.step}' failed in {self.image} ({what})" + (f": {tail}" if tail else "")


class StepRejectedInput(StepFailed):
    """A step found its input unusable (exit status 65, EX_DATAERR): reported as bad input."""

    exit_code = 2

    def _line(self):
        return self.last_line().removeprefix("ERROR: ") or f"step '{self.step}' rejected its input"


class VerificationFailed(OrchestratorError):
    exit_code = 4


class EnvironmentProblem(OrchestratorError):
    """No engine, no image and no way to build it, a missing host tool."""

    exit_code = 5


class BuildFailed(EnvironmentProblem):
    def __init__(self, image, log_tail):
        self.image = image
        self.log_tail = log_tail
        last = [ln for ln in log_tail.splitlines() if ln.strip()]
        super().__init__(f"building {image} failed" + (f": {last[-1].strip()}" if last else ""))


class BuildsFailed(BuildFailed):
    """Several stacks' builds failed (`images build`, which goes on with the others): one line naming each, and the
    exit code of the first failure (5 for a build, 2 for an unusable option such as a missing CA bundle)."""

    def __init__(self, failures):
        self.failures = list(failures)  # [(stack, the error)]
        self.image = ", ".join(getattr(exc, "image", stack) for stack, exc in self.failures)
        self.log_tail = ""
        self.exit_code = self.failures[0][1].exit_code
        EnvironmentProblem.__init__(self, f"{len(self.failures)} stack builds failed: "
                                    + "; ".join(f"{stack} ({one_line(exc)})" for stack, exc in self.failures))


class AttemptsFailed(OrchestratorError):
    """No attempt of a step-choosing option given "auto" (e.g. --converter auto) gave a verified result. The exit
    code is 4 when every attempt ran and failed verification, else 3 (an attempt's step failed)."""

    def __init__(self, message, exit_code):
        super().__init__(message)
        self.exit_code = exit_code


def one_line(text):
    """`text` as one printable line: what is not printable (a newline in a file name, a byte that is not UTF-8,
    kept by Python as a lone surrogate) is escaped as Python writes it (\\n, \\udcff)."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


class BatchFailed(OrchestratorError):
    """`orchestrator batch`: one or more jobs failed (each job's own exit code is in the summary)."""

    exit_code = 6


class CheckFailed(OrchestratorError):
    """`orchestrator check`: the conversion as asked cannot succeed (no route, ops the target lacks)."""

    exit_code = 7


class Terminated(KeyboardInterrupt):
    """SIGTERM (or SIGHUP) arrived: unwinds like Ctrl-C, so the same cleanup runs (containers, workers, staging);
    the CLI exits 128 + the signal's number."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum
