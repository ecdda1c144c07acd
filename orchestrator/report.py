"""report.html in every OUTPUT_DIR: the chain of steps, sizes, the verification table and its error histogram, the
output model's inputs, outputs and op histogram, a latency benchmark and a picture of its graph.

The facts about the output model come from stacks: images/shared/report_model.py (a .tflite, in the stack that ran
it for verification) or inspect_model.py (any other format, in the stack that reads it); the picture's DOT pages are
rendered to SVG by the stack that has Graphviz (the one whose steps/ holds render_graph.py). The page itself is
rendered here from a Jinja2 template, self-contained: inline CSS and SVG, no script, nothing fetched.
"""

import html
import os
import re
from pathlib import Path

import jinja2

from orchestrator import formats, images, protocol
from orchestrator.errors import EnvironmentProblem, StepFailed, StepRejectedInput
from orchestrator.runner import StepRun, execute

REPORT_SCRIPT = "report_model.py"
FLOAT_REFERENCE = "float_reference.tflite"  # a quantized TFLite conversion's float twin (tflite_convert.py)
RENDER_SCRIPT = "render_graph.py"
FILE = "report.html"
TEMPLATE = "report.html.j2"


def enabled():
    """Whether conversions write report.html when the command does not say (ORCHESTRATOR_NO_REPORT=1: not)."""
    return os.environ.get("ORCHESTRATOR_NO_REPORT", "").lower() not in ("1", "true", "yes")


def facts_stack(to, chain):
    """The stack whose scripts read the conversion's result: a .tflite's verification runner's stack (its
    interpreter runs it), else the stack `inspect` reads the format in."""
    from orchestrator import modelinfo, verify

    runner = verify.result_runner(chain[-1]) if chain else None
    if to == "tflite" and runner is not None and images.get_stack(runner.stack).has_script(REPORT_SCRIPT):
        return runner.stack
    return modelinfo.stack_for(to)


def render_stack():
    """The stack that renders DOT to SVG, or None."""
    return next((name for name, stack in images.discover_stacks().items() if stack.has_script(RENDER_SCRIPT)), None)


def model_facts(engine, job, produced, ready, work, memory="8g", timeout=3600.0, log=None):
    """{the output model's facts} for the report and the manifest ("model"), and the SVG pages' host paths in
    "svg_files" (not kept in the manifest). A failure here never fails the conversion: it is said in "error"."""
    from orchestrator.modelinfo import SCRIPT as INSPECT_SCRIPT

    final = produced[job.to]
    stack = facts_stack(job.to, job.chain)
    mounts = {str(final.folder): "/model"}
    path = f"/model/{final.artifact}"
    if job.to == "tflite":
        twin = ["--float_reference", f"/model/{FLOAT_REFERENCE}"] if (final.folder / FLOAT_REFERENCE).is_file() \
            else []
        run = StepRun("report", ready[stack], REPORT_SCRIPT, ["--input", path] + twin, mounts, work / "report")
    else:
        run = StepRun("report", ready[stack], INSPECT_SCRIPT, ["--format", job.to, "--input", path], mounts,
                      work / "report")
    if log:
        log(f"report: reading {final.artifact} in {stack}")
    try:
        meta, result = execute(engine, run, memory=memory, timeout=timeout, log=log)
    except (StepFailed, StepRejectedInput) as exc:
        return {"error": f"{stack} could not read {final.artifact}: {exc}"}
    facts = dict(meta.get("info") or {})
    why = protocol.problem("model_info", facts)
    if why:
        return {"error": f"{run.script} in {stack} wrote facts that break model_info.schema.json: {why}"}
    facts["read_in"] = {"stack": stack, "image": run.image.tag, "seconds": round(result.seconds, 2)}
    facts["svg_files"] = []
    if facts.get("graph_pages"):
        facts.update(render(engine, run.out_dir, work / "report-svg", memory, timeout, log))
    return facts


def render(engine, dot_dir, out_dir, memory, timeout, log):
    """{"svg_files": [...]} rendered by the Graphviz stack, or {"graph_note": why not} (its image missing: nothing
    is built for a picture)."""
    stack = render_stack()
    if stack is None:
        return {"graph_note": "no stack renders Graphviz pictures in this build"}
    try:
        ready = images.ready(engine, [stack], build_missing=False)
    except EnvironmentProblem:
        return {"graph_note": f"the picture needs the {stack} image (Graphviz): orchestrator images build {stack}"}
    # `dot` needs nothing the stack's worker preloads (tf1's imports TensorFlow 1.15): a bare worker of its image,
    # which a batch's jobs share
    run = StepRun("render_graph", ready[stack].bare(), RENDER_SCRIPT, ["--input", "/dot"], {str(dot_dir): "/dot"},
                  out_dir)
    try:
        meta, _ = execute(engine, run, memory=memory, timeout=timeout, log=log)
    except (StepFailed, StepRejectedInput) as exc:
        return {"graph_note": f"Graphviz could not draw the graph: {exc}"}
    return {"svg_files": [str(out_dir / name) for name in meta.get("artifacts") or []]}


def manifest_facts(facts):
    """What the manifest keeps of the facts (everything but host paths)."""
    return {k: v for k, v in facts.items() if k != "svg_files"}


def _size(path):
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0


SVG_HEAD = re.compile(r"^.*?(<svg\b)", re.S)


def inline_svg(path):
    """An SVG file's <svg> element, without its XML prolog and DOCTYPE (which may name a remote DTD)."""
    text = Path(path).read_text(errors="replace")
    text = SVG_HEAD.sub(r"\1", text, count=1)
    text = re.sub(r"<script\b.*?</script>", "", text, flags=re.S | re.I)  # Graphviz writes none; a page runs none
    return re.sub(r"\s(?:xlink:)?href=\"(?!#)[^\"]*\"", "", text)  # no link leaves the page


def histogram_bars(histogram, width=320):
    """[(bin label, count, bar width px)] of an error histogram."""
    counts = histogram.get("counts") or []
    top = max(counts) if counts else 0
    return [(label, n, round(width * n / top) if top else 0) for label, n in zip(histogram.get("bins") or [], counts)]


def _environment():
    loader = jinja2.PackageLoader("orchestrator", "templates")
    env = jinja2.Environment(loader=loader, autoescape=jinja2.select_autoescape(["html", "j2"]),
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["bytes"] = lambda n: "-" if n is None else (f"{n / 1048576:.2f} MiB" if n >= 1048576 else
                                                            f"{n / 1024:.1f} KiB" if n >= 1024 else f"{n} B")
    env.filters["num"] = lambda v, digits=3: "-" if v is None else (f"{v:.{digits}g}" if isinstance(v, float)
                                                                     else str(v))
    env.filters["shape"] = lambda s: "?" if s is None else "[" + ", ".join("?" if d is None else str(d)
                                                                            for d in s) + "]"
    return env


def write(out_dir, manifest, facts, input_path):
    """Write OUTPUT_DIR/report.html from the manifest and the facts; return its path."""
    out_dir = Path(out_dir)
    facts = facts or {}
    artifacts = [(name, _size(out_dir / name)) for name in manifest["artifacts"]]
    verification = manifest.get("verification") or {}
    outputs = [dict(o, bars=histogram_bars(o.get("error_histogram") or {}))
               for o in verification.get("outputs") or []]
    svgs = [inline_svg(p) for p in facts.get("svg_files") or [] if Path(p).is_file()]
    page = _environment().get_template(TEMPLATE).render(
        m=manifest, facts=manifest_facts(facts), artifacts=artifacts, source_size=_size(input_path),
        outputs=outputs, verification=verification, svgs=svgs, graph_pages=facts.get("graph_pages") or [],
        ssd_svg=inline_svg(out_dir / "model.svg") if (out_dir / "model.svg").is_file() else "",
        target=formats.get(manifest["route"]["to"]).description, escape=html.escape)
    path = out_dir / FILE
    path.write_text(page)
    return path
