"""The litert_torch stack as data (no Docker): its stack.json (its steps run in the torch stack's image), the lock of
that image, the helpers it shares with the torch stack, and how verification would run its results; and
scripts/lock_prune.py, which keeps the lock lean."""

import importlib.util
import json
import re
from pathlib import Path

import pytest

from orchestrator import images, protocol, routes, verify

ROOT = Path(__file__).resolve().parents[2]


def _lock_prune():
    spec = importlib.util.spec_from_file_location("lock_prune", ROOT / "scripts" / "lock_prune.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_litert_stack_json_is_valid_and_runs_in_the_torch_stacks_image():
    stack = images.get_stack("litert_torch")
    torch = images.get_stack("torch")
    assert protocol.problem("stack", json.loads((stack.path / "stack.json").read_text())) is None
    # an alias of the torch stack's image: no lock, recipe or smoke test of its own; the image's are torch's
    assert stack.image == "torch" and stack.image_stack == torch and stack.host == torch
    assert stack.recipe == "" and stack.base == "bookworm" and not stack.wheelhouse and not stack.smoke_test
    assert stack.tag() == torch.tag() and stack.content_hash() == torch.content_hash()
    assert [a.name for a in torch.aliases] == ["litert_torch"]
    for name in ("requirements.in", "requirements.lock", "requirements.exclude", "Dockerfile"):
        assert not (stack.path / name).exists(), name
    assert torch.recipe == "python-venv" and torch.wheelhouse
    assert "import litert_torch, ai_edge_litert" not in torch.smoke_test  # one import statement with torch's own
    assert "litert_torch, ai_edge_litert;" in torch.smoke_test and "version('litert-torch')" in torch.smoke_test
    assert "os.environ['KERAS_BACKEND'] = 'torch'" in torch.smoke_test
    # its own routes, runner, worker and environment
    assert stack.runs_formats == ("tflite",) and torch.runs_formats == ("pytorch",)
    assert stack.preload == ("torch", "litert_torch", "numpy") and "onnx" in torch.preload
    assert dict(stack.environment) == {"LITERT_TORCH_SHOW_PROGRESS": "n", "TQDM_DISABLE": "1"}
    assert dict(torch.environment) == {}
    for script in ("litert_convert.py", "run_model.py", "torch_models.py", "layout_bridge.py", "compare.py"):
        assert stack.has_script(script), script
    assert not torch.has_script("litert_convert.py") and not stack.has_script("export_onnx.py")
    # one loader for both stacks, in images/shared/, not a copy in either stack's steps/
    for name in ("torch", "litert_torch"):
        other = images.get_stack(name)
        assert other.has_script("torch_models.py") and not (other.path / "steps" / "torch_models.py").exists()


def test_the_torch_image_builds_with_both_stacks_steps_preloads_and_environments(monkeypatch, tmp_path):
    from fakes import FakeEngine
    from orchestrator import machine

    monkeypatch.setenv("ORCHESTRATOR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(machine, "pip_index_urls", lambda: (None, []))
    stacks = images.discover_stacks()
    engine = FakeEngine(images={images.base_ref("bookworm"): {"id": "sha256:base"}})
    wheels = ROOT / "images" / "torch"  # any folder: the fake build only lists the context
    tag, _ = images.build_stack(engine, stacks["litert_torch"], images.BuildOptions(wheelhouse=str(wheels)),
                                log=lambda _: None)
    build = engine.builds[0]
    assert tag == stacks["torch"].tag() == build["tag"]
    for step in ("steps/litert_convert.py", "steps/run_model.py", "steps/export_onnx.py", "steps/run_torch.py"):
        assert step in build["files"], step
    args = build["buildargs"]
    assert args["PRELOAD"].split(",") == ["torch", "onnx", "onnxscript", "numpy", "litert_torch"]
    assert json.loads(args["STACK_ENVIRONMENT"]) == {"LITERT_TORCH_SHOW_PROGRESS": "n", "TQDM_DISABLE": "1"}
    assert args["SMOKE_TEST"] == stacks["torch"].smoke_test
    assert build["labels"]["org.orchestrator.stack"] == "torch"


def test_litert_lock_pins_what_requirements_in_asks_with_hashes_and_names_no_host_or_folder():
    """The torch stack's lock is the union of both stacks' requirements (litert_torch runs in its image)."""
    folder = images.get_stack("litert_torch").image_stack.path
    assert folder.name == "torch"
    wanted = (folder / "requirements.in").read_text()
    assert re.search(r"^torch==2\.13\.0\+cpu$", wanted, re.M) and re.search(r"^litert-torch==0\.10\.", wanted, re.M)
    assert re.search(r"^onnx==1\.19\.1$", wanted, re.M) and re.search(r"^ai-edge-litert==", wanted, re.M)
    assert "tensorflow" not in wanted
    lock = (folder / "requirements.lock").read_text()
    pins = dict(re.findall(r"^([a-z0-9][a-z0-9._-]*)==(\S+) \\$", lock, re.M))
    assert pins["torch"] == "2.13.0+cpu" and pins["litert-torch"].startswith("0.10.")
    assert "ai-edge-litert" in pins and "ai-edge-quantizer" in pins and "litert-converter" in pins
    assert pins["onnx"] == "1.19.1" and "onnxscript" in pins and pins["keras"] == "3.15.1"
    assert not any(name.startswith("tensorflow") for name in pins)
    for name in pins:  # every pin carries hashes
        assert re.search(rf"^{re.escape(name)}==\S+ \\\n    --hash=sha256:", lock, re.M), name
    assert "http" not in lock.replace("httpx", "").replace("httpcore", "")
    assert "find-links" not in lock and not re.search(r"(^|\s)/(opt|home|root|tmp)/", lock)
    excluded = _lock_prune().read_names(folder / "requirements.exclude")
    assert "transformers" in excluded and not set(excluded) & set(pins)


def test_a_litert_step_result_would_run_in_its_own_stack():
    """A step of the litert_torch stack with no result_runner gets the tflite runner moved into its own stack
    (runs_formats + run_model.py), which also compares: no onnx2tf image is needed to verify it."""
    step = routes.Step("pytorch_to_tflite_litert", "pytorch", "tflite", "litert_torch", "litert_convert.py")
    runner = verify.result_runner(step)
    assert (runner.kind, runner.stack, runner.script) == ("tflite", "litert_torch", "run_model.py")
    assert images.get_stack(runner.stack).compares_in == "litert_torch"


LOCK = """#
# header
#
a==1 \\
    --hash=sha256:aa
    # via -r requirements.in
big==2 \\
    --hash=sha256:bb
    # via a
only-big==3 \\
    --hash=sha256:cc
    # via big
shared==4 \\
    --hash=sha256:dd
    # via
    #   a
    #   big
chain==5 \\
    --hash=sha256:ee
    # via only-big

# The following packages are considered to be unsafe in a requirements file:
setuptools==6 \\
    --hash=sha256:ff
    # via a
"""


def test_lock_prune_leaves_out_the_excluded_and_what_only_they_pull_in():
    text, gone = _lock_prune().prune(LOCK, ["Big"])
    assert gone == ["big", "chain", "only-big"]
    assert "big==2" not in text and "only-big==" not in text and "chain==" not in text
    assert "a==1" in text and "shared==4" in text and "setuptools==6" in text and "unsafe" in text
    assert "#   big" not in text and "#   a" in text  # "via" lines naming a removed package go too
    assert "#    big chain only-big" in text


@pytest.mark.parametrize("names, message", [(["nope"], "nope not in the lock"),
                                            (["a"], "a both required")])
def test_lock_prune_refuses_a_stale_or_contradictory_exclude(names, message):
    with pytest.raises(SystemExit, match=message):
        _lock_prune().prune(LOCK, names)
