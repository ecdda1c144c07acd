"""A fake engine for orchestration tests: records container specs and plays scripted step behaviour."""

import contextlib
import io
import json
import re
import threading
import time
from dataclasses import replace
from pathlib import Path


def keras_h5(config=None):
    """The bytes of a small HDF5 file holding a Keras model config (a Dense model on 4 inputs), written by h5py: what
    the host reads of a Keras .h5 (no keras_version: the file does not say who saved it)."""
    import h5py

    config = config or {"class_name": "Sequential", "config": {"name": "seq", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 4], "dtype": "float32", "name": "x"}},
        {"class_name": "Dense", "config": {"name": "dense", "units": 3}}]}}
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f.attrs["model_config"] = json.dumps(config)
    return buf.getvalue()


KERAS_H5 = keras_h5()
# a TF.js layers model's modelTopology: one Dense layer on 4 inputs
LAYERS_TOPOLOGY = {"model_config": {"class_name": "Sequential", "config": {"layers": [
    {"class_name": "Dense", "config": {"name": "dense", "units": 3, "batch_input_shape": [None, 4]}}]}}}


def varint(n):
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def field(number, payload):
    """A length-delimited protobuf field; an int payload is a varint field."""
    if isinstance(payload, int):
        return varint(number << 3) + varint(payload)
    return varint(number << 3 | 2) + varint(len(payload)) + payload


# a SavedModel: schema version, one MetaGraphDef holding a GraphDef of one Const node
SAVED_MODEL_PB = field(1, 1) + field(2, field(2, field(1, field(1, b"c") + field(2, b"Const"))))


def _table_block(entries):
    """A LevelDB table block (no shared key prefixes, one restart point), with its trailer."""
    body = b"".join(varint(0) + varint(len(k)) + varint(len(v)) + k + v for k, v in entries)
    return body + (0).to_bytes(4, "little") + (1).to_bytes(4, "little"), b"\0" + bytes(4)


def tf_checkpoint(prefix, sizes=(16, 8)):
    """PREFIX.index and PREFIX.data-00000-of-00001 as TensorFlow writes a checkpoint of tensors of `sizes` bytes."""
    entries, offset = [(b"", field(1, 1) + field(3, field(1, 1)))], 0
    for i, size in enumerate(sizes):
        entries.append((f"t{i}".encode(), field(1, 1) + field(3, 0) + field(4, offset) + field(5, size)))
        offset += size
    out, handles = b"", []
    for block in (entries, [], None):
        if block is None:  # the index block: one entry pointing at the data block
            block = [(b"t~", varint(handles[0][0]) + varint(handles[0][1]))]
        body, trailer = _table_block(block)
        handles.append((len(out), len(body)))
        out += body + trailer
    footer = b"".join(varint(o) + varint(n) for o, n in handles[1:])
    Path(prefix).parent.mkdir(parents=True, exist_ok=True)
    out += footer + bytes(40 - len(footer)) + (0xDB4775248B80FB57).to_bytes(8, "little")
    Path(f"{prefix}.index").write_bytes(out)
    Path(f"{prefix}.data-00000-of-00001").write_bytes(bytes(offset))

from orchestrator.engine import ContainerSpec, Mount, RunResult
from orchestrator.errors import EnvironmentProblem


class FakeEngine:
    """A ContainerEngine (orchestrator.engine) that runs nothing: step scripts play scripted behaviours, and the
    contract's shell commands (tests/engine_contract.py) what a real container would do."""

    def __init__(self, images=None, behaviours=None):
        self.images = dict(images or {})  # ref -> info
        self.behaviours = behaviours or {}  # script name -> callable(spec, out_dir) -> RunResult or None
        self.specs = []
        self.builds = []
        self.boxes = {}  # id -> {"spec", "running", "thread"}: what start() left running
        self.started = []  # the specs start() was given
        self.scratches = []  # (host folder, existed) of each worker request's working folder

    def info(self):
        return {"server": "fake", "api": "1.0", "os": "linux", "arch": "amd64"}

    def image(self, ref):
        return self.images.get(ref)

    def import_rootfs(self, tarball, repository, tag, changes=()):
        ref = f"{repository}:{tag}"
        self.images[ref] = {"id": f"sha256:{len(self.images):064d}", "tags": [ref], "size": 1,
                            "labels": {c.split(" ", 1)[1].split("=")[0]: "" for c in changes if c.startswith("LABEL")}}
        return self.images[ref]["id"]

    def save(self, refs, out, progress=None):
        data = json.dumps(list(refs)).encode()
        out.write(data)
        if progress:
            progress(len(data))

    def load(self, source, progress=None):
        data = source.read()
        if data[:2] == b"\x1f\x8b":  # the engine takes gzip-compressed tars too
            import gzip

            data = gzip.decompress(data)
        if progress:
            progress(len(data))
        return json.loads(data)

    def build(self, context_dir, tag, buildargs=None, labels=None, nocache=False, log=None):
        ctx = Path(context_dir)
        self.builds.append({"tag": tag, "buildargs": dict(buildargs or {}), "labels": dict(labels or {}),
                            "files": sorted(p.relative_to(ctx).as_posix() for p in ctx.rglob("*") if p.is_file()),
                            "ca": (ctx / "_build" / "ca.crt").read_text() if (ctx / "_build" / "ca.crt").exists() else None})
        if tag in self.images:  # the tag moves to the new image; the old one stays, untagged
            old = self.images.pop(tag)
            self.images[f"<untagged {old['id']}>"] = dict(old, tags=[])
        if (buildargs or {}).get("CONTENT_HASH"):  # as the legacy builder: the labelled build stage stays behind
            self.images[f"<build stage {len(self.builds)}>"] = {
                "id": f"sha256:b{len(self.builds):063d}", "tags": [], "size": 1000,
                "labels": {"org.orchestrator.stage": "build", "org.orchestrator.content-hash": buildargs["CONTENT_HASH"]}}
        self.images[tag] = {"id": f"sha256:{len(self.builds):064d}", "tags": [tag], "size": 1, "labels": labels or {}}
        return self.images[tag]["id"]

    def layers(self, ref):  # a test gives an image its layers (shared keys: shared layers); else one of its own
        info = self.images[ref]
        return list(info.get("layers") or [(info["id"], info["size"])])

    def prune_images(self, labels):
        if not labels:
            raise ValueError("prune_images needs at least one label")
        gone = [ref for ref, info in self.images.items()
                if not info.get("tags", [ref]) and all(info.get("labels", {}).get(k) == v for k, v in labels.items())]
        freed = sum(self.images.pop(ref)["size"] for ref in gone)
        return {"images": len(gone), "bytes": freed}

    def _exists(self, spec):  # a fake given no images at all (a test of the runner alone) has every image
        if self.images and spec.image not in self.images and spec.image not in {i["id"] for i in self.images.values()}:
            raise EnvironmentProblem(f"image {spec.image} is no longer in the engine")

    def run(self, spec, log=None, watch=None):
        self._exists(spec)
        self.specs.append(spec)
        if spec.command[:2] == ["sh", "-c"]:
            return _shell(spec, watch)
        out = Path(next(m.source for m in spec.mounts if m.target == "/out"))
        script = Path(spec.command[1]).name
        behaviour = self.behaviours.get(script, ok_step)
        result = behaviour(spec, out) or RunResult(0, "", "", 0.1)
        why = watch() if watch else None  # asked once the behaviour wrote what it writes, as if it still ran
        return replace(result, exit_code=137, stopped=why) if why else result


    def session(self, rw=(), ro=()):
        return contextlib.nullcontext(self)

    def start(self, spec):
        self._exists(spec)
        cid = f"fake-{len(self.started)}"
        self.started.append(spec)
        box = {"spec": spec, "running": True, "oom_killed": False}
        self.boxes[cid] = box
        if any(str(c).endswith("step_server.py") for c in spec.command):
            box["thread"] = threading.Thread(target=_serve, args=(self, box), daemon=True)
            box["thread"].start()
        return cid

    def state(self, container):
        box = self.boxes.get(container)
        if box is None:
            return None
        return {"running": box["running"], "exit_code": None if box["running"] else 137,
                "oom_killed": box["oom_killed"]}

    def remove(self, container):
        box = self.boxes.pop(container, None)
        if box is not None:
            box["running"] = False

    def containers(self, labels):
        def carries(spec):
            have = {"org.orchestrator.step": spec.name_hint, **spec.labels}
            return all(k in have and v in (None, have[k]) for k, v in labels.items())

        return [{"id": cid, "labels": {"org.orchestrator.step": box["spec"].name_hint, **box["spec"].labels},
                 "running": box["running"]} for cid, box in self.boxes.items() if carries(box["spec"])]


def _serve(engine, box):
    """What images/shared/step_server.py does, for the fake: the worker's mounts stand for the container's file
    system (a path under a mount target is the same path under its source), and each request plays the script's
    behaviour as `run` would."""
    spec = box["spec"]
    mounts = sorted(spec.mounts, key=lambda m: -len(m.target))
    control = Path(next(m.source for m in mounts if m.target == "/w/ctl"))
    (control / "ready").touch()

    def host(text):
        for m in mounts:
            text = re.sub(rf"(?<![\w./-]){re.escape(m.target)}(?=/|$|[^\w.-])", m.source, text)
        return text

    def play(rid, argv):
        out = Path(host(argv[argv.index("--out") + 1]))
        step = ContainerSpec(image=spec.image, command=argv, mounts=[Mount(str(out), "/out", read_only=False)])
        engine.specs.append(step)
        behaviour = engine.behaviours.get(Path(argv[1]).name, ok_step)
        result = behaviour(step, out) or RunResult(0, "", "", 0.1)
        if not box["running"]:
            return
        if result.exit_code == 137 and box.get("die_on_kill", True):
            box["running"], box["oom_killed"] = False, True  # the memory limit takes the whole worker down
            return
        (control / f"{rid}.out").write_text(result.stdout)
        (control / f"{rid}.err").write_text(result.stderr)
        done(rid, {"exit_code": result.exit_code, "signal": 0, "timed_out": result.timed_out, "seconds": 0.1})

    def done(rid, doc):  # renamed into place, as the server writes it
        (control / f"{rid}.done.tmp").write_text(json.dumps(doc))
        (control / f"{rid}.done.tmp").replace(control / f"{rid}.done")

    while box["running"]:  # each request in a thread of its own, as the server forks each step
        for req in sorted(control.glob("*.req")):
            rid = req.name[:-4]
            request = json.loads(req.read_text())
            argv = request["argv"]  # in the worker's paths, as the step process sees them
            if "scratch" in request:  # the step's working folder: the host made it, it exists while the step runs
                engine.scratches.append((host(request["scratch"]), Path(host(request["scratch"])).is_dir()))
            req.rename(control / f"{rid}.taken")
            threading.Thread(target=play, args=(rid, argv), daemon=True).start()
        for kill in control.glob("*.kill"):  # the host stops one step: it ends as killed, the others go on
            rid = kill.name[:-5]
            if not (control / f"{rid}.done").exists():
                done(rid, {"exit_code": 137, "signal": 9, "timed_out": False, "seconds": 0.1})
        time.sleep(0.01)


def _shell(spec, watch=None):
    """The contract's commands: `sleep N` past the timeout (`watch` asked each second of it), or echo/echo >&2/
    echo > /out/F/exit N."""
    text = spec.command[2]
    if text.startswith("sleep"):
        for second in range(min(int(text.split()[1]), int(spec.timeout))):
            why = watch() if watch else None
            if why:
                return RunResult(137, "", "", second + 1.0, stopped=why)
        return RunResult(-1, "", "", spec.timeout, timed_out=int(text.split()[1]) > spec.timeout)
    stdout, stderr, code = [], [], 0
    for part in (p.strip() for p in text.split(";")):
        if part.startswith("exit"):
            code = int(part.split()[1])
        elif part.endswith(">&2"):
            stderr.append(part[5:-4].strip())
        elif " > /out/" in part:
            words, target = part.split(" > ")
            out = Path(next(m.source for m in spec.mounts if m.target == "/out"))
            (out / target[len("/out/"):]).write_text(words[5:] + "\n")
        elif part.startswith("echo"):
            stdout.append(part[5:])
    return RunResult(code, "".join(w + "\n" for w in stdout), "".join(w + "\n" for w in stderr), 0.01)


def arg(spec, name):
    cmd = spec.command
    return cmd[cmd.index(name) + 1] if name in cmd else None


def ok_step(spec, out):
    """Default behaviour: write the artifacts each real script would write."""
    script = Path(spec.command[1]).name
    files = []
    if script == "to_tflite.py":
        (out / "model.tflite").write_bytes(b"\x00\x00\x00\x00TFL3fake")
        files = ["model.tflite"]
    elif script == "tfjs_convert.py" and arg(spec, "--to") == "keras":
        (out / "model.h5").write_bytes(KERAS_H5)
        files = ["model.h5"]
    elif script in ("run_model.py", "run_tfjs.js", "run_ssd_graph.py"):
        (out / "outputs.npz").write_bytes(b"fake")
        info = {"inputs": [], "outputs": [], "samples": 8, "logits": {}}
        if "--plan" in spec.command:  # the reference: inputs from the plan, a perturbed run, the groups
            plan = json.loads(arg(spec, "--plan"))
            (out / "inputs.npz").write_bytes(b"fake")
            (out / "perturbed.npz").write_bytes(b"fake")
            info["groups"] = [dict(d, start=0, count=plan["samples"]) for d in plan["distributions"][:1]]
            info["perturbation"] = "fake"
        (out / "run.json").write_text(json.dumps(info))
    elif script == "compare.py":
        (out / "verification.json").write_text(json.dumps(verification_record(True, 0.0, arg(spec, "--mode"))))
    elif script in ("report_model.py", "inspect_model.py"):  # model_info.schema.json holds both to the real ones
        info = model_facts(arg(spec, "--format") or "tflite", latency=script == "report_model.py")
        if script == "report_model.py":
            (out / "graph-1.dot").write_text("digraph page1 { op0; }\n")
            files = ["graph-1.dot"]
    elif script == "render_graph.py":
        (out / "graph-1.svg").write_text('<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"><g/></svg>\n')
        files = ["graph-1.svg"]
    (out / "step.json").write_text(json.dumps({"artifacts": files, "versions": {"tensorflow": "fake"},
                                               "info": info if script in ("report_model.py", "inspect_model.py")
                                               else {}}))
    return RunResult(0, "", "", 0.1)


def model_facts(fmt, latency=False):
    """What model_info.py's readers return (report_model.py adds latency and graph pages)."""
    tensor = {"name": "x", "shape": [1, 4], "dtype": "float32"}
    facts = {"format": fmt, "inputs": [tensor], "outputs": [dict(tensor, name="y")], "ops": {"FULLY_CONNECTED": 1},
             "op_kinds": {"builtin": {"FULLY_CONNECTED": 1}, "custom": {}, "flex": {}}, "parameters": 20,
             "size_bytes": 12, "producer": {}, "notes": []}
    if latency:
        timing = {"threads": 1, "median_ms": 0.1, "p90_ms": 0.2}
        facts.update(latency={"runs": 20, "warmup": 3, "interpreter": "fake", "cores": 2, "threads_1": timing,
                              "threads_all": dict(timing, threads=2)},
                     graph_pages=[{"file": "graph-1.dot", "first_op": 0, "ops": 1}])
    return facts


def verification_record(passed, err, mode="none"):
    """What compare.py writes (parity.judge), reduced to the keys the host reads."""
    dist = {"max_abs_err": err, "max_rel_err": err, "scale": 1.0, "basis": "outputs", "passed": passed}
    return {"passed": passed, "mode": mode, "tolerance": 1e-4, "pairing": "name", "conclusive": True,
            "basis": "outputs",
            "outputs": [{"name": "y", "result_name": "y", "max_rel_err": err, "max_abs_err": err, "passed": passed,
                         "shape": [1], "result_shape": [1], "tolerance": 1e-4, "tolerance_source": "mode none default",
                         "conclusive": True, "basis": "outputs", "worst_distribution": "uniform",
                         "by_distribution": {"uniform": dist}}]}


def failing_compare(spec, out):
    (out / "verification.json").write_text(json.dumps(verification_record(False, 0.5)))
    (out / "step.json").write_text(json.dumps({"artifacts": ["verification.json"], "versions": {}, "info": {}}))
    return RunResult(0, "", "", 0.1)


def exit_with(code, stderr="", timed_out=False, oom_killed=False):
    def behaviour(spec, out):
        (out / "half-written.tflite").write_bytes(b"partial")
        return RunResult(code, "", stderr, 0.1, timed_out, oom_killed=oom_killed)
    return behaviour
