"""The `orchestrator` command: a thin python-fire layer over plain functions.

Each method returns a value (fire prints it); the work lives in images.py, planner.py, pipeline.py.
Errors from the library become one line on stderr and a documented exit code (see errors.py);
`--debug` shows the traceback instead.
"""

import contextlib
import os
import re
import signal
import sys
import time

from orchestrator.errors import CheckFailed, OrchestratorError, Terminated, UsageError, one_line


def _log(line):
    print(line, file=sys.stderr, flush=True)


def _engine():
    from orchestrator.engine import Engine

    return Engine()


def _shared_volume(shared_dir, driver, opts):
    """The swarm batch's SharedVolume: --shared-dir (default the user cache's swarm/) and how the nodes reach it."""
    from pathlib import Path

    from orchestrator import swarm
    from orchestrator.cache import default_root

    root = Path(shared_dir).absolute() if shared_dir else default_root() / "swarm"
    root.mkdir(parents=True, exist_ok=True)
    return swarm.SharedVolume(root, str(driver or "local"), tuple(sorted(swarm.parse_volume_opts(opts).items())))


def _step_engine(cache=True, jobs=1):
    """The engine steps run on: warm workers (unless ORCHESTRATOR_WORKERS=0), behind the conversion cache unless
    --no-cache (or ORCHESTRATOR_NO_CACHE=1). `jobs` conversions at once share each stack's worker (workers.SLOTS
    steps at once for each)."""
    from orchestrator import workers

    engine = _engine()
    if workers.enabled():
        engine = workers.WorkerPool(engine, slots=workers.SLOTS * max(1, int(jobs)))
    if not cache or os.environ.get("ORCHESTRATOR_NO_CACHE", "").lower() in ("1", "true", "yes"):
        return engine
    from orchestrator.cache import Cache, CachedEngine

    return CachedEngine(engine, Cache())


@contextlib.contextmanager
def _progress(quiet, verbose):
    """The log sink of one conversion (orchestrator/progress.py), or None with --quiet."""
    if quiet:
        yield None
        return
    from orchestrator.progress import ConversionProgress

    progress = ConversionProgress(verbose=verbose)
    try:
        yield progress
    except BaseException:
        progress.close(failed=True)
        raise
    progress.close()


_RESULT_PRINTED = []  # set once a command printed its result: a later error adds no JSON object to stdout


def _emit(event):
    """One JSON object on its own line of stdout (--json's events and results)."""
    import json

    print(json.dumps(event, sort_keys=True, default=str), flush=True)


def _print_result(text):
    print(text, flush=True)
    _RESULT_PRINTED.append(True)


@contextlib.contextmanager
def _json_events():
    """The log sink of a --json command: each line an {"event": "log"} object."""
    yield lambda line: _emit({"event": "log", "message": line})


def _json_wanted(argv):
    return any(a == "--json" or a.startswith("--json=") and a[7:].lower() in ("true", "1") for a in argv)


def _table(rows, columns):
    if not rows:
        return "(none)"
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    lines = ["  ".join(c.upper().ljust(widths[c]) for c in columns)]
    lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def _from_and(paths, names, command):
    """(FROM or None, the other positional values) of a command taking [FROM] NAME...: FROM is optional."""
    from orchestrator import formats

    paths = [str(p) for p in paths]
    usage = f"usage: orchestrator {command} [FROM] {' '.join(names)}"
    if len(paths) == len(names) + 1:
        formats.public(paths[0])
        return paths[0], paths[1:]
    if len(paths) == len(names):
        if paths[0] in formats.FORMATS and not os.path.exists(paths[0]):
            raise UsageError(f"{usage}: {names[-1]} is missing after FROM {paths[0]}")
        return None, paths
    raise UsageError(f"{usage} ({len(paths)} given)")


class Images:
    """Build, list, save and load the stack images."""

    def base(self, suite="bookworm", mirror=None, from_registry=False, force=False):
        """Build the Debian base image for SUITE (bookworm, bullseye) with debootstrap from MIRROR
        (default: this machine's apt sources) and `docker import` it. --from-registry uses debian:SUITE-slim."""
        from orchestrator import images

        image_id = images.build_base(_engine(), suite, mirror=mirror, from_registry=from_registry, force=force,
                                     log=_log)
        return f"{images.base_ref(suite)} {image_id}"

    def build(self, *stacks, jobs=2, ca_bundle=None, index_url=None, extra_index_url=None, wheelhouse=None,
              no_cache=False, force=False, mirror=None, from_registry=False, verbose=False):
        """Build stack images (all when none named), tagged by the content hash of images/<stack>/.

        -j/--jobs N         build at most N stacks at once (default 2); the missing base images come first. A
                            failed build does not stop the others; each failure is said at the end
        --ca-bundle FILE    extra CA bundle for the build (default: SSL_CERT_FILE, REQUESTS_CA_BUNDLE or PIP_CERT)
        --index-url URL     package index (default: PIP_INDEX_URL or pip config)
        --wheelhouse DIR    local wheels offered to pip (hash-checked against the lock like any other)
        --verbose           the whole build log on screen (else one progress line per stack; the log goes to a
                            file, and its last 40 lines are shown when a build fails)
        """
        from orchestrator import images

        if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
            raise UsageError(f"images build: -j/--jobs must be a whole number of at least 1, not {jobs!r}")
        engine = _engine()
        names = list(stacks) or list(images.discover_stacks())
        extra = None if extra_index_url is None else [u for u in str(extra_index_url).split() if u]
        opts = images.BuildOptions(ca_bundle=ca_bundle, index_url=index_url, extra_index_urls=extra,
                                   wheelhouse=wheelhouse, no_cache=no_cache, mirror=mirror,
                                   from_registry=from_registry, verbose=bool(verbose))
        chosen = [images.get_stack(name) for name in dict.fromkeys(names)]
        built = images.build_stacks(engine, chosen, opts, force=force, jobs=jobs, log=_log)
        return "\n".join(f"{tag} {image_id}" for tag, image_id in built)

    def list(self):
        """Show every stack: tag, image id, size, built or not; then the stack images' total, as the sum of their
        sizes and as the disk they take (the layers they share counted once). Stacks that run in one image (stack.json
        "image") show its tag on each row, and it is counted once."""
        from orchestrator import images

        engine = _engine()
        rows = images.list_images(engine)
        for r in rows:
            r["size_mb"] = "-" if r["size_mb"] is None else f"{r['size_mb']} MB"
            r["built"] = "yes" if r["built"] else "no"
        totals = images.image_totals(engine)
        return (_table(rows, ["stack", "tag", "id", "size_mb", "built"]) +
                f"\n{totals['images']} stack images: {totals['nominal'] / 1e9:.2f} GB as the sum of their sizes, "
                f"{totals['on_disk'] / 1e9:.2f} GB on disk (shared layers counted once)")

    def save(self, file, *stacks):
        """Save the stack images (all, or those named) into one tar FILE for an air-gapped host; FILE ending in
        .tar.gz or .tgz is gzip-compressed. Progress is said every few seconds."""
        from orchestrator import images

        refs = images.save_images(_engine(), file, stacks, log=_log)
        return f"saved {', '.join(refs)} to {file}"

    def load(self, file, label_node=False, manager=None):
        """Load images saved by `images save` (a tar or .tar.gz). --label-node labels this engine's swarm node
        with the stacks it now holds, so that `batch --swarm` places their steps there; a worker's label is set
        through --manager URL (a manager's engine, e.g. tcp://manager:2375)."""
        from orchestrator import images

        engine = _engine()
        loaded = images.load_images(engine, file, log=_log)
        line = "loaded " + ", ".join(loaded)
        if label_node:
            from orchestrator import swarm

            manager_api = swarm.manager_api(manager) if manager else None
            refs = [t for t in loaded if t.startswith(images.REPO + "/") and not t.startswith(images.BASE_REPO + ":")]
            node = swarm.label_loaded(engine.client.api, refs, manager_api)
            line += f"; labelled node {node} for {', '.join(refs) or 'no stack image'}"
        return line


class CacheCommands:
    """The conversion cache: step outputs kept by content (ORCHESTRATOR_CACHE_DIR, else ~/.cache/orchestrator)."""

    def list(self):
        """One line per entry, most recently used first: key, step, image, size, last used."""
        from orchestrator.cache import Cache

        cache = Cache()
        entries = cache.list()
        rows = [{"key": r["key"][:16], "step": r["step"], "image": r["image"], "size_mb": round(r["size"] / 1e6, 1),
                 "used": time.strftime("%Y-%m-%d %H:%M", time.localtime(r["used"]))} for r in entries]
        total = sum(r["size"] for r in entries)
        return (_table(rows, ["key", "step", "image", "size_mb", "used"]) +
                f"\n{len(rows)} entries, {total / 1e6:.1f} MB in {cache.root} (limit {cache.max_bytes / 1e9:.1f} GB)")

    def prune(self, older_than=None, max_size=None, all=False):
        """Remove entries not used for --older-than (e.g. 7d, 12h), then the least recently used beyond
        --max-size (e.g. 2G; default: the limit, ORCHESTRATOR_CACHE_MAX or 5G); --all empties the cache."""
        from orchestrator.cache import Cache, parse_age, parse_size

        cache = Cache()
        limit = 0 if all else parse_size(max_size) if max_size is not None else cache.max_bytes
        removed, freed = cache.prune(older_than=None if older_than is None else parse_age(older_than),
                                     max_bytes=limit)
        return f"removed {removed} entries, {freed / 1e6:.1f} MB freed"


class Orchestrator:
    """Convert ML models between formats; every stack runs in its own pinned Docker image."""

    def __init__(self):
        self.images = Images()
        self.cache = CacheCommands()

    def routes(self):
        """One line per supported FROM -> TO pair, with the stacks it uses."""
        from orchestrator import planner

        return planner.describe_routes()

    def formats(self):
        """The format names this tool knows."""
        from orchestrator import formats

        return [f"{f.name:18} {f.description}" for f in formats.FORMATS.values() if not f.internal]

    def plan(self, source, to="tflite", input=None, **options):
        """Print the chain of steps from SOURCE format to TO without running it (a step-choosing flag such as
        --converter mlir picks the chain it would use; --input FILE picks the stack that reads that file, e.g. a
        Keras 3 .keras)."""
        from orchestrator import formats, pipeline, planner

        producer = pipeline.producer_of(source, input)
        auto = pipeline.auto_option(options)
        if auto:  # every route the option chooses between, as --OPTION auto tries them
            key, name = auto
            tried = pipeline.attempt_values(name, source, to, producer)
            lines = [f"--{name} auto tries {', '.join(tried)}; keeps the verified result with the fewest TRANSPOSE "
                     "ops, then the smaller file"]
            for value in tried:
                try:
                    lines.append(self.plan(source, to, input, **{**options, key: value}))
                except UsageError as exc:
                    lines.append(f"--{name} {value}: left out ({exc})")
            return "\n".join(lines)
        chain, values = pipeline.plan(source, to, options, complete=False, producer=producer)
        text = planner.describe_plan(chain, values, producer, pipeline.plan_preludes(chain, values))
        if input is not None:  # what checking INPUT found, e.g. a graph model's inputs and outputs
            found = formats.get(source).adapter.describe(formats.check(source, input, values))
            text += "".join("\n" + line for line in found)
        return text

    def convert(self, *paths, to="tflite", verify=True, force=False, build=True,
                memory="8g", timeout=3600, quiet=False, cache=True, verbose=False, report=None, json=False,
                **options):
        """[FROM] INPUT OUTPUT_DIR: convert INPUT (a model in format FROM) into OUTPUT_DIR (format TO, default tflite).

        Without FROM the format is detected from INPUT and said (an input that could be several formats is refused,
        naming them).

        Writes the artifacts and manifest.json atomically. Route flags (see `orchestrator plan SOURCE --to TO`)
        follow the converters' own names, e.g. --quantize none|float16|dynamic|int8, --calibration FILE.
        --no-verify skips the parity check; --force replaces a non-empty OUTPUT_DIR; --no-build refuses to build
        missing images; --no-cache runs every step even when the conversion cache holds an identical run;
        --no-report leaves out report.html (the result's facts, its latency benchmark and graph picture).
        On a terminal the running step shows with its elapsed time; --verbose also shows the converters' output.
        --json prints one JSON object per line on stdout: {"event": "log", "message"} as the conversion goes, then
        {"event": "result", "summary", "manifest"} (or {"event": "error", "message", "exit_code"}).
        """
        from orchestrator import pipeline

        source, (input, output_dir) = _from_and(paths, ("INPUT", "OUTPUT_DIR"), "convert")
        with (_json_events() if json else _progress(quiet, verbose)) as log:
            result = pipeline.convert(
                _step_engine(cache), source, input, output_dir, to=to, options=options, verify=verify, force=force,
                build_missing=build, memory=str(memory), timeout=float(timeout), log=log,
                report=None if report is None else bool(report),
            )
        if json:
            _emit({"event": "result", "summary": pipeline.summary(result), "manifest": result})
            return None
        return pipeline.summary(result)

    def verify(self, *paths, to="tflite", build=True, memory="8g", timeout=3600, quiet=False,
               keep=None, cache=True, verbose=False, **options):
        """[FROM] INPUT RESULT: check that RESULT (a model of format TO, default tflite) computes what INPUT (a model
        in format FROM, detected when not given) computes, exactly as `convert` checks its own result. Route flags set the mode (e.g. --quantize int8) and
        the inputs (--sample_input, --verify_samples, --seed); --keep DIR keeps the inputs and outputs.
        Exit 4 when they differ or when nothing conclusive could be compared."""
        from orchestrator import pipeline, verify

        source, (input, result) = _from_and(paths, ("INPUT", "RESULT"), "verify")
        with _progress(quiet, verbose) as log:
            source, _ = pipeline.resolve_source(source, input, log)
            record = pipeline.verify_files(_step_engine(cache), source, input, result, to=to, options=options,
                                           build_missing=build, memory=str(memory), timeout=float(timeout),
                                           log=log, keep=keep)
        return f"{source} -> {to}: {result}: {verify.describe(record)}"

    def batch(self, file, j=1, json=False, build=True, cache=True, memory="8g", timeout=3600, quiet=False,
              swarm=False, max_concurrent=None, shared_dir=None, volume_driver="local", volume_opt=None, retries=2,
              status=False):
        """Run the conversions of a jobs FILE (YAML: `jobs:` of from, input, output_dir, to, flags, name; optional
        `defaults:`), at most -j N at once. A failed job does not stop the others. Prints one summary table (--json:
        one JSON object) and exits 0 when every job passed, 6 when any failed.

        --swarm runs every step as a Swarm service on the cluster this engine manages, at most --max-concurrent N
        jobs at once (default: the active nodes), with data under --shared-dir (default: the user cache's swarm/),
        which nodes reach through a volume: --volume-driver/--volume-opt 'k=v;k=v' (default: a bind of the same path
        on each node). A task whose node is lost runs again elsewhere up to --retries times. --status shows the
        progress of the FILE's batch that is running."""
        from orchestrator import batch
        from orchestrator.errors import BatchFailed

        if status:
            return self._batch_status(file, shared_dir, json)
        jobs = batch.read_jobs(file)
        started = time.monotonic()
        if swarm:
            records, workers = self._swarm_batch(file, jobs, max_concurrent or None, shared_dir, volume_driver,
                                                 volume_opt, retries, build, cache, memory, timeout, quiet)
        else:
            workers = int(j)
            records = batch.run_batch(lambda: _step_engine(cache, workers), jobs, workers=workers,
                                      build_missing=build, memory=str(memory), timeout=float(timeout),
                                      log=None if quiet else _log)
        seconds = time.monotonic() - started
        _print_result(batch.as_json(records, seconds, workers) if json else batch.table(records, seconds))
        failed = [r["name"] for r in records if not r["passed"]]
        if failed:
            raise BatchFailed(f"{len(failed)} of {len(records)} jobs failed: {', '.join(failed)}")

    @staticmethod
    def _swarm_batch(file, jobs, max_concurrent, shared_dir, volume_driver, volume_opt, retries, build, cache,
                     memory, timeout, quiet):
        from orchestrator import batch, swarm
        from orchestrator.cache import Cache, CachedEngine

        volume = _shared_volume(shared_dir, volume_driver, volume_opt)
        engine = swarm.SwarmEngine(_engine(), volume, batch=swarm.batch_id(file), retries=int(retries))
        engine.swarm_info()
        workers = int(max_concurrent) if max_concurrent else max(1, len(
            [n for n in engine.nodes() if n["state"] == "ready" and n["availability"] == "active"]))
        cached = cache and os.environ.get("ORCHESTRATOR_NO_CACHE", "").lower() not in ("1", "true", "yes")
        with engine:
            records = batch.run_batch(lambda: CachedEngine(engine, Cache()) if cached else engine, jobs,
                                      workers=workers, build_missing=build, memory=str(memory),
                                      timeout=float(timeout), log=None if quiet else _log,
                                      work_dir=volume.root / "work",
                                      status=batch.BatchStatus(swarm.status_path(volume, file)),
                                      on_interrupt=engine.close)
        for record in records:
            record["nodes"] = sorted({node for job, _, node in engine.placements if job == record["name"]})
        return records, workers

    @staticmethod
    def _batch_status(file, shared_dir, as_json):
        import json as jsonlib

        from orchestrator import batch, swarm

        volume = _shared_volume(shared_dir, "local", None)
        path = swarm.status_path(volume, file)
        doc = batch.read_status(path)
        if doc is None:
            raise UsageError(f"{file}: no swarm batch of it has run here (no {path}; give the batch's --shared-dir)")
        live = {} if doc.get("finished") else swarm.running(_engine().client.api, swarm.batch_id(file))
        if as_json:
            _print_result(jsonlib.dumps({**doc, "running": live}, sort_keys=True))
            return None
        return batch.status_table(doc, live)

    def inspect(self, model, format=None, json=False, build=True, quiet=False, **options):
        """MODEL: what it is, read in the stack that reads its format (detected unless --format F): inputs and outputs
        (shape, dtype, quantization), op histogram (TFLite: builtin, custom and Flex), parameters, size, producer.
        --json prints one JSON object. Format flags such as --signature_name or --weights_path_prefix apply."""
        from orchestrator import modelinfo

        found = modelinfo.inspect(_engine(), model, format, build_missing=build, log=None if quiet else _log,
                                  values=options)
        if json:
            _print_result(modelinfo.as_json(found))
            return None
        return "\n".join(modelinfo.describe(found))

    def compare(self, a, b, format_a=None, format_b=None, json=False, build=True, memory="8g", timeout=3600,
                quiet=False, **options):
        """A B: run both models on the same inputs (seeded, or --sample_input FILE) as verification does, B judged
        against A, and show what moved: each output's errors, size, parameters, ops and (.tflite) latency. Formats
        are detected unless --format_a/--format_b; --quantize MODE, --tolerance, --seed, --verify_samples apply.
        Exit 4 when the outputs differ beyond the tolerance. --json prints one JSON object."""
        import json as jsonlib

        from orchestrator import compare as compare_mod
        from orchestrator import verify

        with _progress(quiet, False) as log:
            found = compare_mod.compare(_engine(), a, b, format_a, format_b, options, build_missing=bool(build),
                                        memory=str(memory), timeout=float(timeout), log=log)
        _print_result(jsonlib.dumps(found, sort_keys=True) if json else "\n".join(compare_mod.describe(found)))
        verify.check(found["verification"])

    def check(self, *paths, to="tflite", json=False, build=True, quiet=False, **options):
        """[FROM] INPUT: a pre-flight in seconds, not a conversion: the route and stacks `convert` would take, the
        source's ops the target lacks (no TFLite builtin: Flex or custom; no TF.js kernel; no onnx2tf converter),
        and the flags that would help (--allow_flex_ops, --allow_custom_ops, --keep_nchw, another --converter).
        Exit 7 when the conversion as asked cannot succeed. Route flags are taken as `convert` takes them."""
        import json as jsonlib

        from orchestrator import preflight

        source, (input,) = _from_and(paths, ("INPUT",), "check")
        found = preflight.check(_engine(), source, input, to=to, options=options, build_missing=bool(build),
                                log=None if quiet else _log)
        _print_result(jsonlib.dumps(found, sort_keys=True) if json else "\n".join(preflight.describe(found)))
        if not found["passed"]:
            raise CheckFailed(f"check: {found['problems'][0]}")

    def wizard(self):
        """Asks for the model, says what it detected and where it can go, asks for the target, the quantization
        the route offers and what else it needs, prints the equivalent `orchestrator convert` command and runs it."""
        from orchestrator import wizard

        return wizard.run(lambda source, input, output_dir, **kw: self.convert(source, input, output_dir, **kw))

    def sample(self, format, output_dir, kind=None, seed=1, force=False, build=True, quiet=False):
        """Write a small random-weight model of FORMAT into OUTPUT_DIR, for trying routes.

        keras, keras_saved_model, tf_saved_model, tf_frozen_model: KIND cnn (default), saturated (logits in the
        hundreds: a one-hot softmax), saturated-scaled (the same, rescaled after the softmax), mlp, multi (two
        inputs, two outputs), head (a classifier for the cnn's 16 'features') or tfjs-ops (every fused form the TF.js
        converter writes, batch 1, an int32 input), with calibration data; keras
        also keras3 (the cnn as model.keras and model.h5 saved by Keras 3, and sequential.keras), tf-keras (model.h5,
        keras_saved_model/ and saved_model/ by tf_keras / TF 2.21) and keras3-gaps (layers TF.js lacks). ssd: KIND
        float (default) or quant (quantization-aware), as a model-zoo folder ssd_model/ and ssd_model.tar.gz.
        pytorch: KIND cnn, saturated, resnet, dense, inception, inception-v1 (GoogLeNet-style: LRN, ceil-mode
        pools, 1000 classes), fire, shuffle or gelu (exact GELU, which ONNX spells with Erf), as TorchScript,
        .pt2, state_dict + net.py and a pickled module.
        onnx: the same kinds exported by torch.onnx (model.onnx). darknet: KIND yolov3-tiny or yolov4-tiny
        (model.cfg + model.weights). jax: KIND dense or cnn (module.py:build + params.msgpack).
        --no-build refuses a missing stack image instead of building it (air-gapped hosts); --quiet prints only the
        result."""
        from orchestrator import samples

        info = samples.make_sample(_engine(), format, output_dir, kind=kind, seed=int(seed), force=force,
                                   build_missing=bool(build), log=(lambda _line: None) if quiet else _log)
        return f"{format} sample ({info['kind']}) in {output_dir}: " + ", ".join(f"{k}={v}" for k, v in info.items())

    def engine(self):
        """Check that a Docker engine answers."""
        info = _engine().info()
        return f"Docker engine {info['server']} (API {info['api']}, {info['os']}/{info['arch']})"

    def version(self):
        from orchestrator import __version__

        return __version__


FIRE_FLAGS = ("--help", "-h", "--interactive", "-i", "--trace", "-t", "--verbose", "-v", "--completion",
              "--separator")
SHORT_FLAG_RE = re.compile(r"^-[A-Za-z](=.*)?$")


def _positional(arg):
    """A word fire must take as a positional value as it is: a path starting with '-' (fire would read '-model.h5'
    as a flag) is handed over as a Python string literal, which fire evaluates back to the same string."""
    return repr(arg) if arg.startswith("-") else arg


def _normalize_argv(argv):
    """`--no-flag` -> `--flag=False` (fire's own spelling is `--noflag`); `--a-b` is kept (fire maps it).
    A repeatable route flag (Option.repeatable, e.g. one --input-signature per input) given several times becomes
    one flag whose values are joined with ';' (fire would keep only the last).
    File names starting with a dash are positional values: a single-dash word longer than a short flag
    (`-model.h5`, not `-j` or `-j=2`), and every word after a bare `--` (`-- --odd-name.h5`), as in other Unix tools
    (fire's own flags after `--`, e.g. `-- --help`, keep fire's meaning)."""
    from orchestrator.routes import OPTIONS

    repeatable = {o.name for o in OPTIONS.values() if o.repeatable}
    if "--" in argv:
        cut = argv.index("--")
        rest = argv[cut + 1:]
        if not rest or rest[0] not in FIRE_FLAGS:
            return _normalize_argv(argv[:cut]) + [_positional(a) for a in rest]

    out, repeated, i = [], {}, 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("-") and not arg.startswith("--") and len(arg) > 2 and not SHORT_FLAG_RE.match(arg):
            out.append(_positional(arg))
            i += 1
            continue
        flag, eq, value = arg.partition("=")
        name = flag[2:].replace("-", "_") if flag.startswith("--") else None
        if name in repeatable:
            if not eq:
                if i + 1 >= len(argv):
                    out.append(arg)  # let fire report the missing value
                    break
                value, i = argv[i + 1], i + 1
            if name not in repeated:
                repeated[name] = []
                out.append((name,))  # placeholder: the joined flag goes where the first one was
            repeated[name].append(value)
        elif arg.startswith("--no-") and "=" not in arg and len(arg) > 5:
            out.append(f"--{arg[5:]}=False")
        else:
            out.append(arg)
        i += 1
    return [f"--{a[0]}={';'.join(repeated[a[0]])}" if isinstance(a, tuple) else a for a in out]


def _check_flags(argv):
    """Refuse a --flag the command has no parameter for, before it runs: python-fire would run the command first
    and complain after (a conversion done, then "Could not consume arg"). Commands taking **options (convert,
    plan, verify: route flags) check those themselves."""
    import inspect

    target, words = Orchestrator(), []
    for arg in argv:
        if arg.startswith("-") or not hasattr(target, arg.replace("-", "_")):
            break
        target = getattr(target, arg.replace("-", "_"))
        words.append(arg)
    if not callable(target) or inspect.isclass(target):
        return
    params = inspect.signature(target).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    for arg in argv[len(words):]:
        if arg == "--":
            return
        name = arg[2:].split("=", 1)[0].replace("-", "_") if arg.startswith("--") else None
        if name and name not in params and name not in ("help", "debug"):
            known = ", ".join("--" + p.replace("_", "-") for p, v in params.items() if v.kind is not v.VAR_POSITIONAL)
            raise UsageError(f"{' '.join(words)}: no option --{name.replace('_', '-')}"
                             + (f" (options: {known})" if known else ""))


def _terminate_like_ctrl_c():
    """SIGTERM (a service manager, `kill`, CI cancelling a job) and SIGHUP (the terminal closed) unwind as Ctrl-C
    does, so no container, worker or staging folder outlives the orchestrator; Python's default would end it on the
    spot."""
    def raise_terminated(signum, frame):
        raise Terminated(signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, raise_terminated)


def main(argv=None):
    import fire

    argv = list(sys.argv[1:] if argv is None else argv)
    _RESULT_PRINTED.clear()
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    if not argv:
        argv = ["--help"]
    _terminate_like_ctrl_c()
    try:
        argv = _normalize_argv(argv)
        _check_flags(argv)
        fire.Fire(Orchestrator(), command=argv, name="orchestrator")
    except OrchestratorError as exc:
        if debug:
            raise
        print(f"orchestrator: error: {one_line(exc)}", file=sys.stderr)
        if _json_wanted(argv) and not _RESULT_PRINTED:
            _emit({"event": "error", "message": one_line(exc), "exit_code": exc.exit_code})
        sys.exit(exc.exit_code)
    except Terminated as exc:
        print(f"orchestrator: terminated by {signal.Signals(exc.signum).name}", file=sys.stderr)
        sys.exit(128 + exc.signum)
    except KeyboardInterrupt:
        print("orchestrator: interrupted", file=sys.stderr)
        sys.exit(130)
    except fire.core.FireExit as exc:
        sys.exit(exc.code)


if __name__ == "__main__":
    main()
