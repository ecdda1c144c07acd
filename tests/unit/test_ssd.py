import io
import tarfile

import pytest
from fakes import tf_checkpoint

from orchestrator import ssd
from orchestrator.errors import InputError

CONFIG = """model {
  ssd {
    num_classes: 3
    image_resizer { fixed_shape_resizer { height: 160 width: 120 } }
    feature_extractor { type: "ssd_mobilenet_v1" }
  }
}
train_config { batch_size: 1 }
"""


def model_dir(tmp_path, config=CONFIG, ckpts=("model.ckpt",)):
    d = tmp_path / "m"
    d.mkdir()
    (d / "pipeline.config").write_text(config)
    for c in ckpts:
        tf_checkpoint(d / c)
    return d


def test_config_facts(tmp_path):
    facts = ssd.check_config(model_dir(tmp_path) / "pipeline.config")
    assert facts == {"height": 160, "width": 120, "num_classes": 3, "quantized": False}


def test_quantized_config(tmp_path):
    cfg = CONFIG + "graph_rewriter { quantization { delay: 0 } }\n"
    assert ssd.check_config(model_dir(tmp_path, cfg) / "pipeline.config")["quantized"] is True


@pytest.mark.parametrize("old, new, message", [
    ("ssd {", "faster_rcnn {", "is a faster_rcnn model"),
    ("fixed_shape_resizer { height: 160 width: 120 }", "keep_aspect_ratio_resizer { min_dimension: 1 }",
     "uses keep_aspect_ratio_resizer"),
    ("model {", "modell {", "no model { ... } block"),
])
def test_unsupported_configs(tmp_path, old, new, message):
    d = model_dir(tmp_path, CONFIG.replace(old, new))
    with pytest.raises(InputError, match=message):
        ssd.check_config(d / "pipeline.config")


def test_find_model_prefers_the_latest_step(tmp_path):
    d = model_dir(tmp_path, ckpts=("model.ckpt-100", "model.ckpt-2000", "model.ckpt-300"))
    config, prefix = ssd.find_model(d)
    assert config == d / "pipeline.config" and prefix == d / "model.ckpt-2000"


def test_find_model_without_checkpoint_mentions_frozen_graph(tmp_path):
    d = model_dir(tmp_path, ckpts=())
    (d / "frozen_inference_graph.pb").write_bytes(b"x")
    with pytest.raises(InputError, match="frozen_inference_graph.pb cannot be used"):
        ssd.find_model(d)


def test_checkpoint_override_must_exist(tmp_path):
    d = model_dir(tmp_path)
    with pytest.raises(InputError, match="checkpoint prefix does not exist"):
        ssd.find_model(d, checkpoint=d / "other.ckpt")


def _tar(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def test_safe_extract_refuses_escapes_before_writing(tmp_path):
    good = tarfile.TarInfo("m/pipeline.config")
    good.size = 1
    bad = tarfile.TarInfo("m/../../x")
    bad.size = 1
    t = _tar(tmp_path / "t.tar.gz", [(good, b"a"), (bad, b"b")])
    with pytest.raises(InputError, match="would land outside"):
        ssd.safe_extract(t, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_safe_extract_refuses_links_and_absolute_paths(tmp_path):
    link = tarfile.TarInfo("m/link")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    with pytest.raises(InputError, match="link or special file"):
        ssd.safe_extract(_tar(tmp_path / "l.tar.gz", [(link, None)]), tmp_path / "o1")
    absolute = tarfile.TarInfo("/abs")
    absolute.size = 1
    with pytest.raises(InputError, match="would land outside"):
        ssd.safe_extract(_tar(tmp_path / "a.tar.gz", [(absolute, b"x")]), tmp_path / "o2")


def test_not_a_tarball(tmp_path):
    p = tmp_path / "x.tar.gz"
    p.write_bytes(b"garbage")
    with pytest.raises(InputError, match="not a readable tarball"):
        ssd.safe_extract(p, tmp_path / "o")


def test_prepare_mounts_the_folder_and_passes_container_paths(tmp_path):
    d = model_dir(tmp_path)
    inputs, model_in, args, facts = ssd.prepare(d, {}, tmp_path / "scratch")
    assert inputs == {str(d): "/in/model/m"} and model_in == "/in/model/m"
    assert args == ["--pipeline_config", "/in/model/m/pipeline.config", "--checkpoint", "/in/model/m/model.ckpt"]
    assert facts["height"] == 160


def test_prepare_mounts_overrides_from_elsewhere(tmp_path):
    d = model_dir(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    (other / "my.config").write_text(CONFIG)
    (other / "ck.index").write_bytes(b"i")
    (other / "ck.data-00000-of-00001").write_bytes(b"d")
    inputs, _, args, _ = ssd.prepare(d, {"pipeline_config": other / "my.config", "checkpoint": other / "ck"},
                                        tmp_path / "s")
    assert args == ["--pipeline_config", "/in/opt/config/my.config", "--checkpoint", "/in/opt/config/ck"]
    assert inputs == {str(d): "/in/model/m", str(other): "/in/opt/config"}


def test_prepare_refuses_uint8_of_a_float_graph_without_ranges(tmp_path):
    with pytest.raises(InputError, match="--default_ranges_min"):
        ssd.prepare(model_dir(tmp_path), {"quantize": "uint8"}, tmp_path / "s")
