import pytest

from orchestrator import formats, images, planner, routes
from orchestrator.errors import UsageError


def test_plan_keras_to_tflite_is_one_step_in_tf2():
    chain = planner.plan("keras", "tflite")
    assert [(s.source, s.target, s.stack) for s in chain] == [("keras", "tflite", "tf2")]


def test_plan_defaults_to_tflite():
    assert planner.plan("tf_saved_model")[-1].target == "tflite"


def test_impossible_pair_lists_what_is_reachable():
    with pytest.raises(UsageError, match=r"no route from keras to onnx.*reaches: .*tflite"):
        planner.plan("keras", "onnx")


def test_tfjs_formats_only_start_or_end_a_chain():
    assert "keras_saved_model" not in planner.reachable("keras")
    assert [s.name for s in planner.plan("tfjs_layers_model", "tflite")] == ["tfjs_layers_to_keras", "keras_to_tflite"]
    assert [s.name for s in planner.plan("tfjs_layers_model", "tfjs_layers_model")] == ["tfjs_layers_to_tfjs_layers"]


def test_unknown_format_is_usage_error():
    with pytest.raises(UsageError, match="unknown format 'kerass'"):
        planner.plan("kerass", "tflite")


def test_multi_step_chain_is_found_through_intermediate_formats():
    steps = (routes.Step("a", "tfjs_layers_model", "keras", "tf2", "x.py"),
             routes.Step("b", "keras", "tflite", "tf2", "y.py"))
    assert [s.name for s in planner.plan("tfjs_layers_model", "tflite", steps)] == ["a", "b"]
    assert set(planner.reachable("tfjs_layers_model", steps)) == {"keras", "tflite"}


def test_routes_lists_every_step_pair_with_its_stacks():
    lines = planner.describe_routes()
    for step in routes.STEPS:
        if formats.get(step.source).internal or formats.get(step.target).internal:
            continue
        assert any(line.startswith(f"{step.source} -> {step.target}") and step.stack in line for line in lines)


def test_ssd_route_and_its_converter_alternative():
    lines = [ln for ln in planner.describe_routes() if ln.startswith("ssd -> tflite")]
    assert lines[0].startswith("ssd -> tflite  [tf1]  via ssd_export > ssd_toco")
    assert lines[1] == "ssd -> tflite  [tf1, tf2]  with --converter mlir"
    assert not any(ln.startswith("ssd_graph") for ln in planner.describe_routes())


def test_converter_option_chooses_the_step():
    assert [s.name for s in planner.plan("ssd", "tflite")] == ["ssd_export", "ssd_toco"]
    assert [s.name for s in planner.plan("ssd", "tflite", given={"converter": "mlir"})] == ["ssd_export", "ssd_mlir"]


def test_plan_description_names_steps_and_options():
    text = planner.describe_plan(planner.plan("tf_frozen_model", "tflite"))
    assert "tf_frozen_model_to_tflite" in text and "--input_arrays" in text and "verify:" in text


# -- route table consistency ------------------------------------------------------------------
STACKS = images.discover_stacks()


@pytest.mark.parametrize("step", routes.STEPS, ids=lambda s: s.name)
def test_step_is_consistent(step):
    assert step.source in formats.FORMATS and step.target in formats.FORMATS
    assert step.stack in STACKS, f"stack {step.stack} has no images/{step.stack}/stack.json"
    assert (STACKS[step.stack].path / "steps" / step.script).is_file()
    for name in step.options:
        assert name in routes.OPTIONS


@pytest.mark.parametrize("runner", list(routes.RUNNERS.values()) + [routes.COMPARE], ids=lambda r: r.format)
def test_runner_is_consistent(runner):
    assert runner.stack in STACKS
    assert (STACKS[runner.stack].path / "steps" / runner.script).is_file()
    if runner.format != "compare":
        assert runner.format in STACKS[runner.stack].runs_formats
    for name in runner.options:
        assert name in routes.OPTIONS


def test_step_names_are_unique():
    names = [s.name for s in routes.STEPS]
    assert len(names) == len(set(names))


def test_required_options_exist():
    for (opt, _val), needed in routes.REQUIRES.items():
        assert opt in routes.OPTIONS and needed in routes.OPTIONS
    for step_name, needed in routes.STEP_REQUIRED.items():
        assert step_name in {s.name for s in routes.STEPS}
        assert all(n in routes.OPTIONS for n in needed)
