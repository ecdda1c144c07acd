"""The wizard's questions and the command it builds (orchestrator/wizard.py), with scripted answers; the e2e test
drives the real prompts through a terminal (tests/e2e/test_e2e_wizard.py)."""

import pytest

from orchestrator import wizard


class Scripted:
    """questionary's question makers, answering from a list and keeping what each question offered."""

    def __init__(self, *answers):
        self.answers, self.asked = list(answers), []

    def _question(self, kind, message, **kw):
        self.asked.append((kind, message, kw.get("choices"), kw.get("default")))
        answer = self.answers.pop(0)
        return type("Question", (), {"ask": lambda _self: answer})()

    def path(self, message, **kw):
        return self._question("path", message, **kw)

    def select(self, message, **kw):
        return self._question("select", message, **kw)

    def text(self, message, **kw):
        return self._question("text", message, **kw)

    def confirm(self, message, **kw):
        return self._question("confirm", message, **kw)


def test_keras_int8_asks_for_the_calibration_and_runs_the_command(keras_file, tmp_path, capsys):
    calls = []
    q = Scripted(str(keras_file), "tflite", "int8", str(tmp_path / "cal.npy"), str(tmp_path / "out"), True)
    wizard.run(lambda *a, **kw: calls.append((a, kw)) or "done", q)
    kinds = [a[0] for a in q.asked]
    assert kinds == ["path", "select", "select", "text", "text", "confirm"]
    assert q.asked[1][2][0] == "tflite" and "tfjs_layers_model" in q.asked[1][2]  # tflite first, the default
    assert q.asked[2][2] == ["none", "float16", "dynamic", "int8"]
    assert "--calibration" in q.asked[3][1]
    assert calls == [(("keras", str(keras_file), str(tmp_path / "out")),
                      {"to": "tflite", "quantize": "int8", "calibration": str(tmp_path / "cal.npy")})]
    out = capsys.readouterr().out
    assert f"detected keras: {keras_file} is an HDF5 file" in out
    assert (f"orchestrator convert keras {keras_file} {tmp_path / 'out'} --to tflite --quantize int8 "
            f"--calibration {tmp_path / 'cal.npy'}") in out


def test_a_route_without_quantization_asks_none(keras_file, tmp_path):
    q = Scripted(str(keras_file), "tfjs_graph_model", str(tmp_path / "o"), False)
    assert wizard.run(lambda *a, **kw: pytest.fail("ran"), q) == "not run"
    assert [a[0] for a in q.asked] == ["path", "select", "text", "confirm"]


def test_cancelling_a_prompt_is_an_interrupt(keras_file):
    with pytest.raises(KeyboardInterrupt):
        wizard.run(lambda *a, **kw: None, Scripted(None))
