"""What a conversion shows while it runs (orchestrator/progress.py): a live phase with its time on a terminal,
plain lines elsewhere, and every line in a log file."""

import io
import time

from orchestrator import progress as progress_mod
from orchestrator.progress import ConversionProgress


class Tty(io.StringIO):
    def isatty(self):
        return True


def feed(p):
    p("step 1/2: keras_to_tflite (keras -> tflite) in orchestrator/tf2:x")
    p("[keras_to_tflite] W0000 converter noise")
    p("verify: verify_source in orchestrator/tf2:x")
    p("[verify_source] more noise")


def test_plain_lines_show_everything_and_each_phase_time(tmp_path):
    out = io.StringIO()
    p = ConversionProgress(stream=out, folder=tmp_path)
    feed(p)
    p.close()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("step 1/2: keras_to_tflite") and lines[1] == "[keras_to_tflite] W0000 converter noise"
    assert lines[2].startswith("  finished in ") and lines[3].startswith("verify: verify_source")
    assert lines[-1].startswith("  finished in ") and len(lines) == 6
    assert "converter noise" in p.path.read_text()


def test_a_terminal_shows_finished_phases_with_times_and_hides_converter_output(tmp_path, monkeypatch):
    monkeypatch.setattr(progress_mod, "TICK_SECONDS", 0.05)
    out = Tty()
    p = ConversionProgress(stream=out, folder=tmp_path)
    p("step 1/2: keras_to_tflite (keras -> tflite) in orchestrator/tf2:x")
    time.sleep(0.3)
    p("[keras_to_tflite] W0000 converter noise")
    p("verify: verify_source in orchestrator/tf2:x")
    p.close()
    text = out.getvalue()
    assert "converter noise" not in text  # only in the log file
    assert "converter noise" in p.path.read_text()
    assert "step 1/2: keras_to_tflite (keras -> tflite) in orchestrator/tf2:x (0." in text  # finished, with its time
    assert "... 0." in text  # the live status line ticked while it ran


def test_verbose_shows_converter_output_on_a_terminal_and_a_failure_names_the_log(tmp_path):
    out = Tty()
    p = ConversionProgress(stream=out, folder=tmp_path, verbose=True)
    feed(p)
    p.close(failed=True)
    text = out.getvalue()
    assert "converter noise" in text and f"the conversion's full log: {p.path}" in text
