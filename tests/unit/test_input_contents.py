"""Host-side input checks that read what a model file holds (no ML library, nothing run): the protobuf walk, TF
checkpoints, Keras files, Python source, msgpack, Darknet files, TF.js manifests, ONNX external data, SSD tarballs,
and where OUTPUT_DIR may go. tests/robustness runs the same classes of bad input through the real CLI."""

import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

import h5py
import pytest
from fakes import KERAS_H5, field, keras_h5, tf_checkpoint

from orchestrator import cli, contents, formats, pipeline, protowire, shapes, ssd, tfbundle
from orchestrator.errors import InputError, UsageError, one_line
from orchestrator.staging import check_place


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


# -- the wire format ----------------------------------------------------------------------------------------------
def test_protobuf_walk_says_where_bytes_break():
    good = field(1, 7) + field(2, field(1, b"x") + field(2, b"Const"))
    assert [n for n, _, _ in protowire.walk(good)] == [1, 2]
    with pytest.raises(protowire.WireError, match=r"field 2 at byte 2 runs past the end \(10 bytes declared, 9"):
        list(protowire.walk(good[:-1]))
    with pytest.raises(protowire.WireError, match="wire type 3"):
        list(protowire.walk(b"\x0b"))
    schema = {1: (protowire.LENGTH, None)}
    with pytest.raises(protowire.WireError, match="field 1 of the GraphDef should be a length-delimited field, not a "
                                                  "number"):
        protowire.check(good, schema, what="GraphDef")
    with pytest.raises(protowire.WireError, match="has no field 9"):
        protowire.check(field(1, b"x"), schema, required=(9,))
    assert protowire.signed(protowire.varint(field(1, -1 & (2 ** 64 - 1))[1:], 0)[0]) == -1


# -- TensorFlow checkpoints ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("edit, message", [
    (lambda p: os.truncate(f"{p}.data-00000-of-00001", 23), r"data-00000-of-00001: holds 23 bytes but the checkpoint "
                                                            r"index m.index places 24 in it \(truncated\)"),
    (lambda p: open(f"{p}.data-00000-of-00001", "ab").write(b"x"), r"holds 25 bytes .* beyond the last tensor"),
    (lambda p: os.remove(f"{p}.data-00000-of-00001"), r"data-00000-of-00001: is missing \(shard 1 of 1"),
    (lambda p: os.remove(f"{p}.index"), r"m.index: is missing"),
    (lambda p: os.truncate(f"{p}.index", 30), r"m.index: is not a readable TensorFlow checkpoint index: truncated"),
])
def test_a_checkpoint_must_be_whole(tmp_path, edit, message):
    tf_checkpoint(tmp_path / "m")
    tfbundle.check(tmp_path / "m")
    edit(tmp_path / "m")
    with pytest.raises(InputError, match=message):
        tfbundle.check(tmp_path / "m")


def test_a_saved_model_is_checked_through(tmp_path):
    sm = tmp_path / "sm"
    write(sm / "saved_model.pb", field(1, 1) + field(2, field(2, field(1, field(1, b"c") + field(2, b"Const")))))
    tf_checkpoint(sm / "variables" / "variables")
    assert formats.check_input("tf_saved_model", sm) == sm.resolve()
    os.truncate(sm / "variables" / "variables.data-00000-of-00001", 1)
    with pytest.raises(InputError, match="variables.data-00000-of-00001: holds 1 bytes"):
        formats.check_input("tf_saved_model", sm)
    os.remove(sm / "variables" / "variables.data-00000-of-00001")
    (sm / "variables" / "variables.data-00000-of-00001").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(InputError, match="is a symbolic link to .*elsewhere, outside the input folder"):
        formats.check_input("tf_saved_model", sm)


def test_a_frozen_graph_is_told_from_other_protobufs(tmp_path):
    graph = field(1, field(1, b"x") + field(2, b"Placeholder")) + field(4, field(1, 1))
    assert formats.check_input("tf_frozen_model", write(tmp_path / "g.pb", graph))
    with pytest.raises(InputError, match="g2.pb: is not a frozen GraphDef: truncated or corrupt"):
        formats.check_input("tf_frozen_model", write(tmp_path / "g2.pb", graph[:-1]))
    saved = field(1, 1) + field(2, field(2, graph))
    with pytest.raises(InputError, match="is a SavedModel's saved_model.pb, not a frozen GraphDef"):
        formats.check_input("tf_frozen_model", write(tmp_path / "s.pb", saved))
    onnx = field(1, 8) + field(7, field(2, b"g"))
    with pytest.raises(InputError, match="is an ONNX model, not a frozen GraphDef"):
        formats.check_input("tf_frozen_model", write(tmp_path / "o.pb", onnx))


# -- Keras files ---------------------------------------------------------------------------------------------------
def keras_config(shape):
    return {"class_name": "Functional", "config": {"layers": [
        {"class_name": "InputLayer", "config": {"batch_shape": shape, "name": "image"}}]}}


@pytest.mark.parametrize("shape, message", [
    ([None, 0, 3], r"input layer 'image' of shape \[None, 0, 3\] has a dimension of 0"),
    ([None, -1, 3], "has a dimension of -1"),
    ([None, 2 ** 31], "past the 2147483647 that TFLite's int32 shapes hold"),
    ([None, 2 ** 15, 2 ** 15], "holds 1073741824 elements per sample"),
])
def test_absurd_keras_input_shapes(tmp_path, shape, message):
    with pytest.raises(InputError, match=message):
        formats.check_input("keras", write(tmp_path / "m.h5", keras_h5(keras_config(shape))))


def test_keras_files_hdf5_and_keras_archives(tmp_path):
    assert formats.check_input("keras", write(tmp_path / "ok.h5", KERAS_H5))
    with pytest.raises(InputError, match="cut.h5: is not a readable HDF5 file: truncated or corrupt"):
        formats.check_input("keras", write(tmp_path / "cut.h5", KERAS_H5[:len(KERAS_H5) // 2]))
    weights = tmp_path / "w.h5"
    with h5py.File(weights, "w") as f:
        f.create_dataset("kernel", data=[1.0])
    with pytest.raises(InputError, match="w.h5: holds no model .no model_config"):
        formats.check_input("keras", weights)
    with pytest.raises(InputError, match="h5.keras: is an HDF5 file named .keras"):
        formats.check_input("keras", write(tmp_path / "h5.keras", KERAS_H5))

    def archive(name, members):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            for member, data in members.items():
                z.writestr(member, data)
        return write(tmp_path / name, buf.getvalue())

    config = json.dumps(keras_config([None, 4]))
    assert formats.check_input("keras", archive("ok.keras", {"config.json": config, "model.weights.h5": KERAS_H5}))
    with pytest.raises(InputError, match="zip.h5: is a zip archive .* not named .keras"):
        formats.check_input("keras", archive("zip.h5", {"config.json": config, "model.weights.h5": KERAS_H5}))
    with pytest.raises(InputError, match="no.keras: has no model.weights.h5"):
        formats.check_input("keras", archive("no.keras", {"config.json": config}))
    with pytest.raises(InputError, match=r"cut.keras \(its model.weights.h5\): is not a readable HDF5 file"):
        formats.check_input("keras", archive("cut.keras", {"config.json": config, "model.weights.h5": KERAS_H5[:99]}))
    with pytest.raises(InputError, match="big.keras: input layer 'image' .* has a dimension of 0"):
        formats.check_input("keras", archive("big.keras", {"config.json": json.dumps(keras_config([None, 0])),
                                                           "model.weights.h5": KERAS_H5}))


# -- Python source, msgpack, Darknet -------------------------------------------------------------------------------
def test_python_source_is_parsed_not_run(tmp_path):
    ok = write(tmp_path / "m.py", "import sys\ntry:\n    from x import y\nexcept ImportError:\n    def build():\n"
                                   "        sys.exit(1)\nclass Net: pass\n")
    contents.check_python(ok, "build")  # would exit if it ran
    contents.check_python(ok, "Net")
    with pytest.raises(InputError, match="m.py: defines no 'make' at its top level .given to --model_code"):
        contents.check_python(ok, "make", "--model_code")
    contents.check_python(write(tmp_path / "star.py", "from nets import *\n"), "anything")
    with pytest.raises(InputError, match=r"bad.py: is not valid Python: SyntaxError: .* \(line 1\)"):
        contents.check_python(write(tmp_path / "bad.py", "def (:\n"), "build")
    with pytest.raises(InputError, match="bin.py: is not valid Python"):
        contents.check_python(write(tmp_path / "bin.py", b"\xcd\xff\x00"), "build")
    with pytest.raises(InputError, match="e.py: is empty"):
        contents.check_python(write(tmp_path / "e.py", ""), "build")


def test_msgpack_structure(tmp_path):
    params = b"\x81\xa6params\x92\x01\xcb" + bytes(8)  # {"params": [1, 0.0]}
    contents.check_msgpack(write(tmp_path / "p.msgpack", params))
    for name, data, said in (("cut", params[:-1], "ends inside an object"), ("tail", params + b"\x00", "1 bytes follow"),
                             ("bad", b"\xc1", "starts no msgpack object"), ("empty", b"", "it is empty")):
        with pytest.raises(InputError, match=f"{name}.msgpack: is not a msgpack file: truncated or corrupt .*{said}"):
            contents.check_msgpack(write(tmp_path / f"{name}.msgpack", data))


@pytest.mark.parametrize("cfg, message", [
    ("[net]\nwidth=96\n[convolutional]\nfilt", r"line 4: 'filt' is neither a \[section\] nor key=value"),
    ("[net]\nwidth=96\n[convolutional]\nfilters=", "line 4: 'filters' has no value"),
    ("[net]\nwidth=0\nheight=96\nchannels=3\n", r"\[net\] \(line 1\) width=0 height=96 channels=3: the input "
                                                r"\[1, 96, 0, 3\] has a dimension of 0"),
    ("[net]\nwidth=ninety\n", r"\[net\] width=ninety is not a whole number"),
    ("width=96\n[net]\n", r"must start with a \[net\] section"),
])
def test_darknet_cfg_lines(tmp_path, cfg, message):
    with pytest.raises(InputError, match=message):
        contents.check_darknet(write(tmp_path / "y.cfg", cfg))


def test_darknet_weights_hold_whole_floats(tmp_path):
    header = (0).to_bytes(4, "little") + (2).to_bytes(4, "little") + bytes(12)  # 0.2: a 64-bit images-seen count
    contents.check_darknet_weights(write(tmp_path / "w", header + bytes(8)))
    with pytest.raises(InputError, match="holds 7 bytes after its 20-byte header, not a whole number of float32"):
        contents.check_darknet_weights(write(tmp_path / "w", header + bytes(7)))
    with pytest.raises(InputError, match="shorter than a Darknet weights header"):
        contents.check_darknet_weights(write(tmp_path / "w", bytes(5)))


# -- TF.js manifests, ONNX external data ---------------------------------------------------------------------------
def graph_model(tmp_path, weights=None, paths=("w.bin",), extra_inputs=0):
    nodes = [{"name": "x", "op": "Placeholder", "attr": {"shape": {"shape": {"dim": [{"size": "1"}]}}}}]
    nodes += [{"name": f"i{i}", "op": "Placeholder"} for i in range(extra_inputs)]
    doc = {"format": "graph-model", "modelTopology": {"node": nodes},
           "weightsManifest": [{"paths": list(paths), "weights": weights or [{"name": "w", "shape": [2],
                                                                              "dtype": "float32"}]}]}
    write(tmp_path / "w.bin", bytes(8))
    return write(tmp_path / "model.json", json.dumps(doc))


@pytest.mark.parametrize("kw, message", [
    ({"weights": [{"name": "w", "shape": [2], "dtype": "float64"}]}, "weight 'w' has dtype 'float64', which TF.js"),
    ({"weights": [{"name": "w", "shape": [2], "dtype": "float32", "quantization": {"dtype": "int4"}}]},
     "quantized to 'int4'"),
    ({"weights": [{"name": "w", "shape": ["two"], "dtype": "float32"}]}, r"has shape \[\"two\"\]: not a list of sizes"),
    ({"weights": [{"name": "w", "shape": [-2], "dtype": "float32"}]}, r"has shape \[-2\]"),
    ({"paths": ["https://example.com/w.bin"]}, "is a URL; conversions read local files only"),
    ({"paths": ["/etc/hostname"]}, "is an absolute path, outside the model folder"),
    ({"paths": ["../w.bin"]}, r"weight path '../w.bin' points outside the model folder"),
    ({"extra_inputs": shapes.MAX_TENSORS}, "declares 4097 inputs; at most 4096 are supported"),
])
def test_tfjs_manifests(tmp_path, kw, message):
    with pytest.raises(InputError, match=message):
        formats.check_input("tfjs_graph_model", graph_model(tmp_path / "m", **kw))


@pytest.mark.parametrize("fmt, topology, message", [
    ("tfjs_layers_model", {"model_config": {"class_name": "Sequential", "config": {"layers": "dense"}}},
     "its Sequential model config does not list its layers"),
    ("tfjs_layers_model", {"model_config": {"config": {}}}, "its model config has no class_name"),
    ("tfjs_graph_model", {"node": [{"name": "x", "op": "Placeholder", "attr": ["dtype"]}]},
     "is not a TensorFlow.js graph model: its graph is malformed"),
])
def test_malformed_tfjs_topologies(tmp_path, fmt, topology, message):
    doc = {"format": fmt[5:].replace("_model", "-model"), "modelTopology": topology, "weightsManifest": []}
    with pytest.raises(InputError, match=message):
        formats.check_input(fmt, write(tmp_path / "model.json", json.dumps(doc)))


def onnx_with_external(location, length=8):
    tensor = field(8, b"w") + field(13, field(1, b"location") + field(2, location.encode())) + field(
        13, field(1, b"length") + field(2, str(length).encode())) + field(14, 1)
    return field(1, 8) + field(7, field(5, tensor))


@pytest.mark.parametrize("location, data, message", [
    ("w.bin", 8, None),
    ("w.bin", 7, r"w.bin: holds 7 bytes but m.onnx reads initializer 'w' up to byte 8 \(truncated\)"),
    ("gone.bin", 8, r"gone.bin: is missing \(the external data of initializer 'w' in m.onnx\)"),
    ("../w.bin", 8, "m.onnx: the external data of initializer 'w' '../w.bin' points outside the model's folder"),
])
def test_onnx_external_data(tmp_path, location, data, message):
    write(tmp_path / "w.bin", bytes(data))
    model = write(tmp_path / "m.onnx", onnx_with_external(location))
    if message is None:
        assert formats.check_input("onnx", model)
    else:
        with pytest.raises(InputError, match=message):
            formats.check_input("onnx", model)


# -- SSD tarballs and configs --------------------------------------------------------------------------------------
CONFIG = "model { ssd { num_classes: 3 image_resizer { fixed_shape_resizer { height: 8 width: 8 } } } }\n"


def ssd_tarball(tmp_path, config=CONFIG, big=0, short=False):
    folder = tmp_path / "src" / "m"
    write(folder / "pipeline.config", config)
    tf_checkpoint(folder / "model.ckpt")
    if short:
        os.truncate(folder / "model.ckpt.data-00000-of-00001", 1)
    path = tmp_path / "m.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder, arcname="m")
        if big:
            info = tarfile.TarInfo("m/big.bin")
            info.size = big
            tar.addfile(info, io.BytesIO(bytes(big)))
    return path


def test_ssd_tarballs_are_checked_without_unpacking(tmp_path, monkeypatch):
    assert formats.check_input("ssd", ssd_tarball(tmp_path / "ok"))
    monkeypatch.setenv("ORCHESTRATOR_MAX_UNPACK", "100K")
    with pytest.raises(InputError, match=r"unpacks to more than 0.0 GB \(member 'm/big.bin' alone 0.0 GB\): a "
                                         "decompression bomb"):
        formats.check_input("ssd", ssd_tarball(tmp_path / "bomb", big=200_000))
    cut = ssd_tarball(tmp_path / "cut")
    cut.write_bytes(cut.read_bytes()[:-1])  # the gzip trailer: the tar inside is whole
    with pytest.raises(InputError, match="m.tar.gz: is not a readable tarball: truncated or corrupt"):
        formats.check_input("ssd", cut)
    with pytest.raises(InputError, match=r"m.tar.gz: m/model.ckpt.data-00000-of-00001 holds 1 bytes but"):
        formats.check_input("ssd", ssd_tarball(tmp_path / "short", short=True))
    with pytest.raises(InputError, match=r"m.tar.gz \(m/pipeline.config\): num_classes: 1000000 is more than"):
        formats.check_input("ssd", ssd_tarball(tmp_path / "classes", CONFIG.replace("3", "1000000")))
    assert all("src" in p.parts for p in tmp_path.rglob("pipeline.config"))  # nothing was unpacked


@pytest.mark.parametrize("config, message", [
    (CONFIG[:-10], "its braces do not balance"),
    (CONFIG.replace("height: 8", "height: 0"), r"fixed_shape_resizer \{ height: 0 width: 8 \}: the input"),
    ("# only a comment\n", "no model"),
])
def test_ssd_config_checks(tmp_path, config, message):
    with pytest.raises(InputError, match=message):
        ssd.check_config(write(tmp_path / "pipeline.config", config))


# -- option shapes, missing options, OUTPUT_DIR ----------------------------------------------------------------------
@pytest.mark.parametrize("source, options, message", [
    ("pytorch", {"input_shape": "1,0,8"}, "--input_shape 1,0,8: the input has a dimension of 0"),
    ("pytorch", {"input_shape": "1,3:1,2147483648"}, "input 2 has a dimension of 2147483648"),
    ("jax", {"input_signature": "b,0:float32"}, "--input_signature b,0:float32: the input has a dimension of 0"),
])
def test_absurd_shapes_in_options(source, options, message):
    with pytest.raises(UsageError, match=message):
        pipeline.plan(source, "tflite", options, complete=False)


def test_a_missing_option_is_said_of_the_input(tmp_path):
    cfg = write(tmp_path / "y.cfg", "[net]\nwidth=8\n")
    with pytest.raises(InputError, match="y.cfg: darknet -> tflite needs --weights"):
        pipeline.plan_job("darknet", cfg)


def test_output_dir_places(tmp_path, monkeypatch):
    model = write(tmp_path / "in" / "model.h5", KERAS_H5)
    check_place(tmp_path / "out", [model])
    with pytest.raises(UsageError, match=r"model.h5/out: cannot be made: .*model.h5 is a file, not a folder"):
        check_place(model / "out", [model])
    with pytest.raises(UsageError, match=r"in: holds the input .*model.h5; replacing it would delete the input"):
        check_place(tmp_path / "in", [model])
    with pytest.raises(UsageError, match=r"in/sub: lies inside the input"):
        check_place(tmp_path / "in" / "sub", [tmp_path / "in"])
    with pytest.raises(UsageError, match=r"in: is the input"):
        check_place(tmp_path / "in", [tmp_path / "in"])
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(UsageError, match=r"new/out: cannot write there: .* is (not writable|on a read-only)"):
        check_place(tmp_path / "new" / "out", [model])


# -- the command line: names starting with a dash, one line whatever the name -------------------------------------
def test_dash_names_are_positional():
    literal = repr("-model.h5")
    assert cli._normalize_argv(["convert", "keras", "-model.h5", "out"]) == ["convert", "keras", literal, "out"]
    assert cli._normalize_argv(["convert", "keras", "--", "--odd.h5", "-o"]) == [
        "convert", "keras", repr("--odd.h5"), repr("-o")]
    assert cli._normalize_argv(["batch", "jobs.yaml", "-j", "2"]) == ["batch", "jobs.yaml", "-j", "2"]
    assert cli._normalize_argv(["convert", "--", "--help"]) == ["convert", "--", "--help"]  # fire's own


def test_a_fifo_is_no_input(tmp_path):
    os.mkfifo(tmp_path / "model.h5")
    with pytest.raises(InputError, match="model.h5: is a device, FIFO or socket, not a file or folder"):
        formats.check_input("keras", tmp_path / "model.h5")


def test_names_the_engine_cannot_mount(tmp_path):
    name = os.fsdecode(b"model-\xff.h5")
    model = write(tmp_path / name, KERAS_H5)
    with pytest.raises(InputError, match=r"model-.\.h5: its name holds bytes that are not UTF-8, which the Docker "
                                         "engine cannot mount: rename it"):
        formats.check_input("keras", model)
    with pytest.raises(UsageError, match="not UTF-8"):
        check_place(tmp_path / name / "out", [])


def test_error_lines_stay_one_line(tmp_path, capsys):
    assert one_line("mo\ndel-\udcff.h5 'q'") == "mo\\ndel-\\udcff.h5 'q'"
    bad = write(tmp_path / "mo\ndel.h5", b"")
    with pytest.raises(SystemExit) as exc:
        cli.main(["convert", "keras", str(bad), str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and "mo\\ndel.h5: is empty" in err


def test_an_onnx_model_with_external_data_mounts_its_folder_and_hashes_the_data(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "robustness"))
    import protowrite

    from orchestrator import formats

    (tmp_path / "m.onnx").write_bytes(protowrite.onnx_model(external={"location": "w.bin", "offset": "0",
                                                                      "length": "48"}))
    (tmp_path / "w.bin").write_bytes(bytes(48))
    fmt = formats.FORMATS["onnx"]
    source = fmt.adapter.check(fmt, tmp_path / "m.onnx")
    assert set(source.files) == {"m.onnx", "w.bin"}
    mounted = fmt.adapter.prepare(source, {}, tmp_path / "scratch")
    assert mounted.mounts == {str(tmp_path.resolve()): "/in/model"} and mounted.model == "/in/model/m.onnx"
    (tmp_path / "plain.onnx").write_bytes(protowrite.onnx_model())
    plain = fmt.adapter.check(fmt, tmp_path / "plain.onnx")
    assert set(plain.files) == {"plain.onnx"}
    assert fmt.adapter.prepare(plain, {}, tmp_path / "s").mounts == {str((tmp_path / "plain.onnx").resolve()):
                                                                      "/in/model/plain.onnx"}
