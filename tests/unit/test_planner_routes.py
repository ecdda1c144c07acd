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
    assert [s.name for s in planner.plan("ssd", "tflite", given={"converter": "toco"})] == ["ssd_export", "ssd_toco"]
    assert [s.name for s in planner.plan("ssd", "tflite", given={"converter": "mlir"})] == ["ssd_export", "ssd_mlir"]
    assert planner.choosing_values("converter", "ssd", "tflite") == ["toco", "mlir"]
    assert planner.choosing_values("converter", "keras", "tflite") == []


def test_a_converter_with_no_route_names_the_ones_there_are():
    with pytest.raises(UsageError, match=r"^no route from ssd to tflite with --converter onnx2tf; --converter here: "
                                         r"toco, mlir, auto$"):
        planner.plan("ssd", "tflite", given={"converter": "onnx2tf"})


def test_plan_description_names_steps_options_and_required_ones():
    text = planner.describe_plan(planner.plan("tf_frozen_model", "tflite"))
    assert "tf_frozen_model_to_tflite" in text and "--input_arrays" in text and "verify:" in text
    assert "required: --input_arrays --output_arrays" in text


# -- route table consistency ------------------------------------------------------------------
STACKS = images.discover_stacks()


@pytest.mark.parametrize("step", routes.STEPS, ids=lambda s: s.name)
def test_step_is_consistent(step):
    assert step.source in formats.FORMATS and step.target in formats.FORMATS
    assert step.stack in STACKS, f"stack {step.stack} has no images/{step.stack}/stack.json"
    assert STACKS[step.stack].has_script(step.script)
    for name in step.accepts() + step.required:
        assert name in routes.OPTIONS
    assert set(step.required) <= set(step.options)


RUNNERS = [f.runner for f in formats.FORMATS.values() if f.runner] + [s.result_runner for s in routes.STEPS
                                                                       if s.result_runner]


@pytest.mark.parametrize("runner", RUNNERS, ids=lambda r: f"{r.kind}-{r.stack}")
def test_runner_is_consistent(runner):
    assert runner.stack in STACKS
    assert STACKS[runner.stack].has_script(runner.script)
    assert runner.kind in STACKS[runner.stack].runs_formats
    for name in runner.options:
        assert name in routes.OPTIONS
    compare = STACKS[STACKS[runner.stack].compares_in]
    assert compare.has_script("compare.py") and not compare.compare_in


def test_step_names_are_unique():
    names = [s.name for s in routes.STEPS]
    assert len(names) == len(set(names))


def test_option_rules_name_options_that_exist():
    for option in routes.OPTIONS.values():
        for value, needed in option.requires:
            assert value in option.choices and needed in routes.OPTIONS
        assert not option.together or routes.OPTIONS[option.together].together == option.name
        assert all(new in routes.OPTIONS for _, new in option.replaced_by)
        assert not option.model_format or option.model_format in formats.FORMATS
        assert not option.names_artifact or option.names_artifact in formats.FORMATS
    for fmt in formats.FORMATS.values():
        assert all(o in routes.OPTIONS for o in fmt.adapter.options + fmt.adapter.required)
