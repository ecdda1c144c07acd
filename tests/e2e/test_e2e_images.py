import tarfile
from ast import literal_eval

import pytest

from clihelp import cli, last_line
from orchestrator import images

pytestmark = pytest.mark.e2e


def test_base_image_records_mirror_suite_and_date(engine, stack_images):
    info = engine.image(images.base_ref("bookworm"))
    labels = info["labels"]
    assert labels["org.orchestrator.base.suite"] == "bookworm"
    assert labels["org.orchestrator.base.date"]
    assert labels.get("org.orchestrator.base.mirror") or "registry" in labels["org.orchestrator.base.method"]


def test_unchanged_stack_is_not_rebuilt_and_is_listed(engine, stack_images):
    stack = images.get_stack("tf2")
    proc = cli("images", "build", "tf2")
    assert proc.returncode == 0 and "is up to date" in proc.stderr
    info = engine.image(stack.tag())
    assert info["labels"]["org.orchestrator.content-hash"] == stack.content_hash()
    listing = cli("images", "list").stdout
    row = next(line for line in listing.splitlines() if line.startswith("tf2 "))
    assert stack.tag() in row and row.rstrip().endswith("yes") and info["id"][7:19] in row


def test_images_are_lean_and_builds_leave_no_stages_behind(engine, stack_images):
    """No apt or pip or npm caches, no pip, npm or compiler, no test suites in any stack image; the Python stacks'
    modules that the steps import are compiled (bytecode that needs no check against its source: a step's root is
    read-only, so it could never write its own), and only those; the build stages are gone once the images are
    built; `images list` totals them."""
    from orchestrator.engine import ContainerSpec

    probe = ("ls /var/cache/apt/archives/*.deb /var/cache/apt/*.bin /root/.cache /root/.npm 2>/dev/null; "
             "for c in pip pip3 npm gcc g++ cc make; do command -v $c; done; "
             "find /opt /usr/local/lib -type d -name tests | head -3")
    # numpy (every step imports it): its pyc's flags (header bytes 4-8) are 1 = hash-based, not checked against the
    # source (PEP 552); numpy's conftest.py (pytest's, imported by nothing) and TensorBoard's server (where the
    # stack has TensorBoard: tf.summary never imports it) have sources and no bytecode
    bytecode = "\n".join([
        "import importlib.util, os, numpy",
        "def pyc(source): return importlib.util.cache_from_source(source)",
        "print(int.from_bytes(open(pyc(numpy.__file__), 'rb').read()[4:8], 'little'))",
        "unused = [os.path.join(os.path.dirname(numpy.__file__), 'conftest.py')]",
        "board = importlib.util.find_spec('tensorboard')",
        "unused += [os.path.join(os.path.dirname(board.origin), 'program.py')] if board else []",
        "print([(os.path.basename(f), os.path.isfile(f), os.path.exists(pyc(f))) for f in unused])"])
    built = images.images_of(images.discover_stacks().values())  # each image once (litert_torch runs in torch's)
    for stack in built:
        name = stack.name
        assert engine.run(ContainerSpec(image=stack.tag(), command=["sh", "-c", probe])).stdout == "", name
        if stack.recipe == "python-venv":
            out = engine.run(ContainerSpec(image=stack.tag(), command=["python", "-c", bytecode])).stdout
            flags, unused = out.splitlines()
            assert flags == "1", (name, out)
            assert literal_eval(unused)[0] == ("conftest.py", True, False), (name, out)
            assert literal_eval(unused)[1:] in ([], [("program.py", True, False)]), (name, out)
        assert engine.prune_images({"org.orchestrator.content-hash": stack.content_hash()})["images"] == 0, name
    total = cli("images", "list").stdout.strip().splitlines()[-1]
    assert total.startswith(f"{len(built)} stack images: ") and " GB on disk" in total, total


def test_litert_torch_runs_in_the_torch_image_with_both_stacks_steps_and_bytecode(engine, stack_images):
    """One image for two stacks (images/litert_torch/stack.json "image": "torch"): building either builds it, `images
    list` shows its tag on both rows, it carries both stacks' steps, both stacks' libraries import in it with the
    litert_torch stack's environment, and the modules of both stacks' preload lists have their bytecode."""
    from orchestrator.engine import ContainerSpec

    torch, litert = images.get_stack("torch"), images.get_stack("litert_torch")
    assert litert.tag() == torch.tag()
    proc = cli("images", "build", "litert_torch")
    assert proc.returncode == 0 and f"{torch.tag()} is up to date" in proc.stderr, proc.stderr[-2000:]
    assert proc.stdout.split()[0] == torch.tag()
    rows = {line.split()[0]: line.split() for line in cli("images", "list").stdout.splitlines() if line.strip()}
    assert rows["litert_torch"][1:3] == rows["torch"][1:3] and rows["torch"][1] == torch.tag()
    check = "\n".join([
        "import importlib.util, os, sys",
        "steps = sorted(os.listdir('/opt/steps'))",
        "print('steps:', all(s in steps for s in ('litert_convert.py', 'run_model.py', 'export_onnx.py',",
        "                                          'run_torch.py')))",
        "import torch, onnx, onnxscript, litert_torch, ai_edge_litert, ai_edge_quantizer",
        "print('bytecode:', all(os.path.exists(importlib.util.cache_from_source(sys.modules[m].__file__))",
        "                       for m in ('torch', 'onnx', 'onnxscript', 'litert_torch', 'ai_edge_litert')))"])
    out = engine.run(ContainerSpec(image=torch.tag(), command=["python", "-c", check],
                                   environment=dict(litert.environment)))
    said = [line for line in out.stdout.splitlines() if line.startswith(("steps:", "bytecode:"))]
    assert said == ["steps: True", "bytecode: True"], (out.stdout, out.stderr[-2000:])


def test_no_extra_ca_or_index_is_left_in_the_image(engine, stack_images):
    from orchestrator.engine import ContainerSpec

    spec = ContainerSpec(image=images.get_stack("tf2").tag(), command=[
        "sh", "-c", "ls /usr/local/share/ca-certificates /tmp/build 2>&1; env | grep -c PIP_INDEX || true"])
    out = engine.run(spec).stdout
    assert "build-extra.crt" not in out and "ca.crt" not in out
    assert out.strip().endswith("0")


def test_save_and_load_round_trip(engine, stack_images, tmp_path):
    target = tmp_path / "stacks.tar"
    proc = cli("images", "save", target, "tf2", "tfjs")
    assert proc.returncode == 0, proc.stderr
    with tarfile.open(target) as tar:
        assert "manifest.json" in tar.getnames()
    proc = cli("images", "load", target)
    assert proc.returncode == 0 and images.get_stack("tf2").tag() in proc.stdout
    assert images.get_stack("tfjs").tag() in proc.stdout
    # .tar.gz: compressed by name, with progress lines; the engine loads it as it is
    packed = tmp_path / "tfjs.tar.gz"
    proc = cli("images", "save", packed, "tfjs")
    assert proc.returncode == 0 and "images save (tfjs.tar.gz): " in proc.stderr, proc.stderr
    assert packed.read_bytes()[:2] == b"\x1f\x8b" and packed.stat().st_size < target.stat().st_size
    proc = cli("images", "load", packed)
    assert proc.returncode == 0 and images.get_stack("tfjs").tag() in proc.stdout, proc.stderr
    # a truncated archive: one line naming it, exit 2
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(packed.read_bytes()[:4096])
    proc = cli("images", "load", cut)
    assert proc.returncode == 2 and "cut.tar.gz: the engine cannot load it" in last_line(proc), proc.stderr
    assert "Traceback" not in proc.stderr
