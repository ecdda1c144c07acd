"""Host-side handling of TF1 Object Detection API SSD models (no TensorFlow needed here):
safe unpacking of model-zoo tarballs, finding pipeline.config and the checkpoint, and early,
clear rejection of pipelines this route cannot convert."""

import re
import tarfile
from pathlib import Path, PurePosixPath

from orchestrator import contents, protocol, shapes, tfbundle
from orchestrator.errors import InputError

CONFIG_NAME = "pipeline.config"
MAX_UNPACK = "4G"  # what a model-zoo tarball may unpack to (ORCHESTRATOR_MAX_UNPACK): more is a decompression bomb
MAX_CLASSES = 100000


def is_tarball(path):
    name = Path(path).name.lower()
    return Path(path).is_file() and (name.endswith((".tar.gz", ".tgz", ".tar")))


def max_unpack():
    from orchestrator.cache import size_setting

    return size_setting("ORCHESTRATOR_MAX_UNPACK", MAX_UNPACK)


def safe_members(tar, tarball):
    """The members of an open tarball, refused (InputError) unless every one lands inside the folder it is unpacked
    in (no absolute paths, no '..'), is a file or a folder (no links, devices or FIFOs), and they unpack to at most
    max_unpack() bytes (a sparse or highly compressed member is a decompression bomb)."""
    members, total, limit = tar.getmembers(), 0, max_unpack()
    for m in members:
        p = PurePosixPath(m.name)
        if p.is_absolute() or ".." in p.parts:
            raise InputError(tarball, f"member '{m.name}' would land outside the folder it is unpacked in")
        if not (m.isfile() or m.isdir()):
            raise InputError(tarball, f"member '{m.name}' is a link or special file; only files and "
                                      "folders are accepted")
        total += m.size
        if total > limit:
            raise InputError(tarball, f"unpacks to more than {limit / 1e9:.1f} GB (member '{m.name}' alone "
                                      f"{m.size / 1e9:.1f} GB{', a sparse file' if m.issparse() else ''}): a "
                                      "decompression bomb? (ORCHESTRATOR_MAX_UNPACK raises the limit)")
    while tar.fileobj.read(1 << 20):  # to the end of the compressed stream: its checksum and length are checked
        pass
    return members


def unreadable(tarball, exc):
    """The InputError of a tarball that tarfile or its decompressor cannot read through."""
    said = contents.first_line(exc).rstrip(":")
    if isinstance(exc, tarfile.ReadError) and "opened successfully" in said:
        said = "neither a tar archive nor a compressed one"
    return InputError(tarball, f"is not a readable tarball: truncated or corrupt ({said})")


def _open_tar(tarball):
    try:
        return tarfile.open(tarball)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise unreadable(tarball, exc) from None


def safe_extract(tarball, dest):
    """Unpack a tarball into dest; every member must land inside dest (no absolute paths, no '..',
    no links, devices or FIFOs), within the size limit. Checked before anything is written."""
    tarball, dest = Path(tarball), Path(dest)
    try:
        with _open_tar(tarball) as tar:
            members = safe_members(tar, tarball)
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
        raise unreadable(tarball, exc) from None
    return dest


def _latest(indexes):
    """The checkpoint index of the highest step (model.ckpt-1234.index), as TF's latest_checkpoint picks it."""
    def step(p):
        m = re.search(r"-(\d+)\.index$", p.name)
        return int(m.group(1)) if m else -1
    return sorted(indexes, key=lambda p: (step(p), str(p)))[-1]


def check(src, values):
    """Check an SSD input before anything runs: its tarball's members (without unpacking it), or the folder's
    tree; then pipeline.config and the checkpoint (index and data shards)."""
    src = Path(src)
    if not is_tarball(src):
        contents.check_tree(src)
        config, prefix = find_model(src, values.get("checkpoint"), values.get("pipeline_config"))
        check_config(config)
        tfbundle.check(prefix)
        return
    with _open_tar(src) as tar:
        try:
            members = {PurePosixPath(m.name): m for m in safe_members(tar, src) if m.isfile()}
            if values.get("pipeline_config") is not None:
                check_config(values["pipeline_config"])
            else:
                found = sorted(p for p in members if p.name == CONFIG_NAME)
                if len(found) != 1:
                    raise InputError(src, f"holds {'no' if not found else 'several'} {CONFIG_NAME} (give one with "
                                          "--pipeline_config)")
                text = tar.extractfile(members[found[0]]).read(1 << 20)
                config_facts(text.decode("utf-8", "replace"), f"{src} ({found[0]})")
            if values.get("checkpoint") is not None:
                tfbundle.check(values["checkpoint"])
                return
            indexes = [p for p in members if p.name.endswith(".index")]
            if not indexes:
                raise InputError(src, "holds no checkpoint (*.index); give one with --checkpoint")
            index = _latest(indexes)
            try:
                found = tfbundle.shard_ends(tar.extractfile(members[index]).read())
            except tfbundle.Unreadable as exc:
                raise InputError(src, f"{index}: {tfbundle.unreadable(exc)}") from None
            for i, end in enumerate(found[1] if found else ()):
                data = index.parent / tfbundle.data_name(index.name[:-len(".index")], i, found[0])
                why = tfbundle.shard_problem(members[data].size if data in members else None, end, i, found[0],
                                             index.name)
                if why:
                    raise InputError(src, f"{data} {why}")
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise unreadable(src, exc) from None


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
        prefix = _latest(indexes).with_suffix("")
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
        raise InputError(config, f"cannot read ({contents.first_line(exc)})") from None
    return config_facts(text, config)


def _balanced(text):
    """Whether the braces of a protobuf text file close, strings and comments aside."""
    depth = 0
    for brace in re.sub(r'"(\\.|[^"\\\n])*"|\'(\\.|[^\'\\\n])*\'|#[^\n]*', "", text):
        depth += {"{": 1, "}": -1}.get(brace, 0)
        if depth < 0:
            return False
    return depth == 0


def config_facts(text, config):
    """check_config on the text of a pipeline.config (`config`: how to name it)."""
    if not text.strip():
        raise InputError(config, "is empty")
    if not _balanced(text):
        raise InputError(config, "is truncated or corrupt: its braces do not balance")
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
    height, width = int(h.group(1)), int(w.group(1))
    why = shapes.problem([1, height, width, 3], unknown=())
    if why:
        raise InputError(config, f"fixed_shape_resizer {{ height: {height} width: {width} }}: the input "
                                 f"{shapes.describe([1, height, width, 3])} {why}")
    if classes and int(classes.group(1)) > MAX_CLASSES:
        raise InputError(config, f"num_classes: {classes.group(1)} is more than any detector has (at most "
                                 f"{MAX_CLASSES} here)")
    return {"height": height, "width": width, "num_classes": int(classes.group(1)) if classes else None,
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
