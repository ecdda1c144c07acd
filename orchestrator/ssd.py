"""Host-side handling of TF1 Object Detection API SSD models (no TensorFlow needed here):
safe unpacking of model-zoo tarballs, finding pipeline.config and the checkpoint, and early,
clear rejection of pipelines this route cannot convert."""

import re
import tarfile
from pathlib import Path, PurePosixPath

from orchestrator import protocol
from orchestrator.errors import InputError

CONFIG_NAME = "pipeline.config"


def is_tarball(path):
    name = Path(path).name.lower()
    return Path(path).is_file() and (name.endswith((".tar.gz", ".tgz", ".tar")))


def safe_extract(tarball, dest):
    """Unpack a tarball into dest; every member must land inside dest (no absolute paths, no '..',
    no links, devices or FIFOs). Checked before anything is written."""
    tarball, dest = Path(tarball), Path(dest)
    try:
        with tarfile.open(tarball) as tar:
            members = tar.getmembers()
            for m in members:
                p = PurePosixPath(m.name)
                if p.is_absolute() or ".." in p.parts:
                    raise InputError(tarball, f"member '{m.name}' would land outside the folder it is unpacked in")
                if not (m.isfile() or m.isdir()):
                    raise InputError(tarball, f"member '{m.name}' is a link or special file; only files and "
                                              "folders are accepted")
            dest.mkdir(parents=True, exist_ok=True)
            for m in members:
                target = dest / m.name
                if m.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(m) as src, open(target, "wb") as out:
                    while True:
                        block = src.read(1 << 20)
                        if not block:
                            break
                        out.write(block)
    except (tarfile.TarError, EOFError, OSError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(tarball, f"not a readable tarball ({exc})") from exc
    return dest


def _single(paths, what, where):
    if not paths:
        return None
    if len(paths) > 1:
        names = ", ".join(str(p.relative_to(where)) for p in paths[:4])
        raise InputError(where, f"holds several {what} ({names}); choose one with the matching option")
    return paths[0]


def find_model(folder, checkpoint=None, pipeline_config=None):
    """(pipeline.config path, checkpoint prefix path) for a model-zoo folder; options override."""
    folder = Path(folder)
    if pipeline_config is not None:
        config = Path(pipeline_config)
    else:
        config = _single(sorted(folder.rglob(CONFIG_NAME)), "pipeline.config files", folder)
        if config is None:
            raise InputError(folder, "no pipeline.config found (give one with --pipeline_config)")
    if checkpoint is not None:
        prefix = Path(checkpoint)
        if not Path(str(prefix) + ".index").is_file():
            raise InputError(prefix, "checkpoint prefix does not exist (no .index file beside it)")
    else:
        indexes = sorted(folder.rglob("*.index"))
        if not indexes:
            hint = " (frozen_inference_graph.pb cannot be used for TFLite)" if list(folder.rglob(
                "frozen_inference_graph.pb")) else ""
            raise InputError(folder, f"no checkpoint (*.index) found{hint}; give one with --checkpoint")
        if len(indexes) > 1:
            # model.ckpt-1234.index: the highest step wins, as TF's own latest_checkpoint would do
            def step(p):
                m = re.search(r"-(\d+)\.index$", p.name)
                return int(m.group(1)) if m else -1
            indexes.sort(key=step)
        prefix = indexes[-1].with_suffix("")
    if not list(prefix.parent.glob(prefix.name + ".data-*")):
        raise InputError(prefix, "checkpoint has an .index but no .data-* shards")
    return config, prefix


def _block(text, key):
    """The text of the first `key { ... }` block (balanced braces), or None."""
    m = re.search(r"\b" + re.escape(key) + r"\s*\{", text)
    if not m:
        return None
    depth, i = 1, m.end()
    while i < len(text) and depth:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    return text[m.end():i - 1]


def check_config(config):
    """Reject pipelines this route cannot convert, before any container starts.
    Returns {'height', 'width', 'num_classes', 'quantized'}."""
    config = Path(config)
    try:
        text = config.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(config, f"cannot read ({exc})") from exc
    text_nc = re.sub(r"#[^\n]*", "", text)
    model = _block(text_nc, "model")
    if model is None:
        raise InputError(config, "no model { ... } block: not an Object Detection API pipeline.config")
    arch = re.match(r"\s*(\w+)\s*\{", model)
    arch = arch.group(1) if arch else "unknown"
    if arch != "ssd":
        raise InputError(config, f"is a {arch} model; only SSD models can be converted to TFLite with the "
                                 "TFLite_Detection_PostProcess op")
    resizer = _block(model, "image_resizer") or ""
    kind = re.match(r"\s*(\w+)\s*\{", resizer)
    kind = kind.group(1) if kind else "none"
    if kind != "fixed_shape_resizer":
        raise InputError(config, f"uses {kind}; TFLite needs a fixed input shape, i.e. a fixed_shape_resizer "
                                 "(retrain or re-export with one)")
    fixed = _block(resizer, "fixed_shape_resizer")
    h = re.search(r"height\s*:\s*(\d+)", fixed)
    w = re.search(r"width\s*:\s*(\d+)", fixed)
    if not (h and w):
        raise InputError(config, "fixed_shape_resizer without height and width")
    classes = re.search(r"num_classes\s*:\s*(\d+)", model)
    rewriter = _block(text_nc, "graph_rewriter") or ""
    return {"height": int(h.group(1)), "width": int(w.group(1)),
            "num_classes": int(classes.group(1)) if classes else None,
            "quantized": "quantization" in rewriter}


def prepare(src, values, scratch):
    """Mounts and arguments for the first step of an SSD route.

    Returns (inputs {host path: container path}, container path of the model folder, extra args, facts)."""
    src = Path(src)
    folder = safe_extract(src, Path(scratch) / "unpacked") if is_tarball(src) else src
    if not folder.is_dir():
        raise InputError(src, "is neither a model folder nor a .tar.gz of one")
    config, prefix = find_model(folder, values.get("checkpoint"), values.get("pipeline_config"))
    facts = check_config(config)
    if values.get("quantize") == "uint8" and not facts["quantized"] and "default_ranges_min" not in values:
        raise InputError(config, "has no graph_rewriter { quantization }: the model was trained without "
                                 "quantization, so its graph has no ranges for uint8; give --default_ranges_min and "
                                 "--default_ranges_max (e.g. 0 and 6; accuracy suffers), or retrain with quantization")
    model_in = f"{protocol.MODEL_DIR}/{src.name if folder is src else 'model'}"
    inputs = {str(folder): model_in}

    def container_path(path, mount_dir, mount_at):
        """Inside the model folder: its path there; elsewhere: mount `mount_dir` at `mount_at`."""
        try:
            return f"{model_in}/{Path(path).resolve().relative_to(folder.resolve()).as_posix()}"
        except ValueError:
            mount_at = inputs.setdefault(str(mount_dir), mount_at)  # one mount per folder
            return f"{mount_at}/{Path(path).name}"

    args = ["--pipeline_config", container_path(config, config.parent, f"{protocol.OPTION_DIR}/config"),
            "--checkpoint", container_path(prefix, prefix.parent, f"{protocol.OPTION_DIR}/checkpoint")]
    facts.update(pipeline_config=str(config), checkpoint=str(prefix))
    return inputs, model_in, args, facts
