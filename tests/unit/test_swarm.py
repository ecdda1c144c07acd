"""Swarm batch logic with no engine: a ContainerSpec as a service, the shared volume's mounts, shipping inputs,
status. The real services, nodes and hardening are checked in tests/e2e/test_e2e_swarm.py."""

import os
from pathlib import Path

import pytest

from orchestrator import batch, swarm
from orchestrator.engine import ContainerSpec, Mount
from orchestrator.errors import UsageError


def spec(**kw):
    base = dict(image="orchestrator/tf2:0123456789ab", command=["python", "/opt/steps/x.py", "--out", "/out"],
                environment={"HOME": "/scratch"}, user="1000:1000", memory="2g", timeout=60.0,
                max_file_size=1 << 30, name_hint="keras_to_tflite", labels={"org.orchestrator.session": "s"})
    base.update(kw)
    return ContainerSpec(**base)


def test_service_spec_carries_every_hardening_setting():
    body = swarm.service_spec(spec(), [], "orch-net", ["node.labels.a==b"], {"k": "v"}, job_mode=False)
    task = body["TaskTemplate"]
    c = task["ContainerSpec"]
    assert c["ReadOnly"] is True and c["CapabilityDrop"] == ["ALL"] and c["User"] == "1000:1000"
    assert c["Ulimits"] == [{"Name": "fsize", "Soft": 1 << 30, "Hard": 1 << 30}]
    assert c["Privileges"] == {"NoNewPrivileges": True}
    assert {"Type": "tmpfs", "Target": "/tmp", "TmpfsOptions": {"SizeBytes": 512 << 20, "Mode": 0o1777}} in c["Mounts"]
    assert task["Resources"]["Limits"] == {"MemoryBytes": 2 << 30, "Pids": 4096}
    assert task["RestartPolicy"]["Condition"] == "none"
    assert task["Networks"] == [{"Target": "orch-net"}] and task["Placement"]["Constraints"] == ["node.labels.a==b"]
    assert c["Env"] == ["HOME=/scratch"] and c["Dir"] == "/tmp" and c["Command"][-1] == "/out"
    assert c["Labels"]["org.orchestrator.step"] == "keras_to_tflite" and body["Labels"] == {"k": "v"}
    assert body["Mode"] == {"Replicated": {"Replicas": 1}}
    assert body["Name"].startswith("orch-keras-to-tflite-")


def test_job_mode_on_engines_that_remove_job_tasks():
    body = swarm.service_spec(spec(), [], "n", [], {}, job_mode=True)
    assert body["Mode"] == {"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}}


def test_no_privileges_field_when_the_spec_does_not_ask():
    body = swarm.service_spec(spec(security_opt=()), [], "n", [], {}, job_mode=False)
    assert "Privileges" not in body["TaskTemplate"]["ContainerSpec"]


def test_default_volume_binds_each_folder_below_the_root(tmp_path):
    vol = swarm.SharedVolume(tmp_path)
    (tmp_path / "work" / "a").mkdir(parents=True)
    m = vol.mount(tmp_path / "work" / "a", "/out", read_only=False)
    assert m["Type"] == "volume" and m["Target"] == "/out" and "ReadOnly" not in m
    assert m["VolumeOptions"]["DriverConfig"] == {
        "Name": "local", "Options": {"type": "none", "o": "bind", "device": str(tmp_path.resolve() / "work" / "a")}}
    ro = vol.mount(tmp_path / "work" / "a", "/in", read_only=True)
    assert ro["VolumeOptions"]["DriverConfig"]["Options"]["o"] == "bind,ro"


def test_nfs_volume_points_each_mount_at_its_sub_folder(tmp_path):
    opts = swarm.parse_volume_opts("type=nfs;o=addr=10.0.0.5,rw,nfsvers=4;device=:/exports/orch/")
    vol = swarm.SharedVolume(tmp_path, "local", tuple(opts.items()))
    (tmp_path / "inputs" / "k").mkdir(parents=True)
    m = vol.mount(tmp_path / "inputs" / "k", "/model", read_only=True)
    assert m["VolumeOptions"]["DriverConfig"]["Options"] == {
        "type": "nfs", "o": "addr=10.0.0.5,rw,nfsvers=4,ro", "device": ":/exports/orch/inputs/k"}


def test_other_drivers_take_subpath_and_mode(tmp_path):
    vol = swarm.SharedVolume(tmp_path, "acme", (("path", "/share/{subpath}"), ("mode", "{mode}")))
    (tmp_path / "w").mkdir()
    opts = vol.mount(tmp_path / "w", "/out", read_only=False)["VolumeOptions"]["DriverConfig"]
    assert opts == {"Name": "acme", "Options": {"path": "/share/w", "mode": "rw"}}
    with pytest.raises(UsageError, match="subpath"):
        swarm.SharedVolume(tmp_path, "acme", (("path", "/share"),))
    with pytest.raises(UsageError, match="device"):
        swarm.SharedVolume(tmp_path, "local", (("type", "nfs"),))


def test_a_folder_outside_the_root_is_never_mounted(tmp_path):
    vol = swarm.SharedVolume(tmp_path / "root")
    (tmp_path / "root").mkdir()
    with pytest.raises(ValueError):
        vol.mount(tmp_path, "/x", read_only=True)
    assert vol.holds(tmp_path / "root" / "a") and not vol.holds(tmp_path / "rootx")


@pytest.mark.parametrize("text, why", [("novalue", "NAME=VALUE"), ("=x", "NAME=VALUE")])
def test_volume_opts_refused(text, why):
    with pytest.raises(UsageError, match=why):
        swarm.parse_volume_opts(text)


def test_image_label_is_the_stack_and_its_content_tag():
    assert swarm.image_label("orchestrator/tf2:96e2e1c8fc30") == ("org.orchestrator.image.tf2", "96e2e1c8fc30")


def test_mounts_ship_inputs_gather_files_and_copy_back(tmp_path):
    root, user = tmp_path / "shared", tmp_path / "user"
    root.mkdir()
    user.mkdir()
    (user / "model.h5").write_bytes(b"h5")
    (user / "calib").mkdir()
    (user / "calib" / "a.npy").write_bytes(b"npy")
    (user / "base.json").write_text("{}")
    out = root / "work" / "step1"
    out.mkdir(parents=True)
    elsewhere = user / "keep"
    engine = swarm.SwarmEngine(base=None, volume=swarm.SharedVolume(root))
    s = spec(mounts=[Mount(str(user / "model.h5"), "/model/model.h5"), Mount(str(user / "base.json"), "/model/b.json"),
                     Mount(str(user / "calib"), "/opt_in/calib"), Mount(str(out), "/out", False),
                     Mount(str(elsewhere), "/keep", False)])
    mounts, back = engine._mounts(s, root / "mounts" / "r1")
    by_target = {m["Target"]: m["VolumeOptions"]["DriverConfig"]["Options"] for m in mounts}
    assert set(by_target) == {"/model", "/opt_in/calib", "/out", "/keep"}
    model_dir = Path(by_target["/model"]["device"])
    assert sorted(p.name for p in model_dir.iterdir()) == ["b.json", "model.h5"] and root in model_dir.parents
    assert by_target["/model"]["o"] == "bind,ro" and by_target["/out"] == {"type": "none", "o": "bind",
                                                                          "device": str(out.resolve())}
    calib = Path(by_target["/opt_in/calib"]["device"])
    assert (calib / "a.npy").read_bytes() == b"npy" and root / "inputs" in calib.parents
    assert back == [(elsewhere, Path(by_target["/keep"]["device"]))]
    again, _ = engine._mounts(s, root / "mounts" / "r2")  # shipped once per batch
    assert {m["Target"]: m["VolumeOptions"]["DriverConfig"]["Options"]["device"] for m in again}["/opt_in/calib"] == \
        str(calib)
    assert len(list((root / "inputs").iterdir())) == 3
    (user / "model.h5").write_bytes(b"changed")  # a changed input is shipped again
    os.utime(user / "model.h5", ns=(1, 1))
    engine._mounts(s, root / "mounts" / "r3")
    assert len(list((root / "inputs").iterdir())) == 4


def test_status_file_and_table(tmp_path):
    jobs = [batch.BatchJob("a", "keras", Path("a.h5"), Path("o/a")), batch.BatchJob("b", "keras", Path("b"), Path("o/b")),
            batch.BatchJob("c", "keras", Path("c"), Path("o/c"))]
    status = batch.BatchStatus(tmp_path / "s.json")
    status.start(jobs, {"c": {"error": "c.h5: no such file"}})
    status.update("a", state="running", started=100.0)
    doc = batch.read_status(tmp_path / "s.json")
    assert [j["state"] for j in doc["jobs"].values()] == ["running", "pending", "failed"] and doc["finished"] is None
    text = batch.status_table(doc, {"a": [{"step": "keras_to_tflite", "node": "n1", "state": "running",
                                           "seconds": 3.2}]}, now=110.0)
    assert "keras_to_tflite on n1 (running, 3 s)" in text and "10.0" in text and "c.h5: no such file" in text
    assert text.splitlines()[-1] == "1 failed, 1 pending, 1 running; running"
    status.finish()
    assert batch.status_table(batch.read_status(tmp_path / "s.json"), {}).endswith("; finished")
    assert batch.read_status(tmp_path / "none.json") is None


def test_batch_id_names_the_jobs_file(tmp_path):
    assert swarm.batch_id(tmp_path / "a.yaml") == swarm.batch_id(tmp_path / "." / "a.yaml")
    assert swarm.batch_id(tmp_path / "a.yaml") != swarm.batch_id(tmp_path / "b.yaml")
    vol = swarm.SharedVolume(tmp_path)
    assert swarm.status_path(vol, tmp_path / "a.yaml").parent == tmp_path / "batches"


@pytest.mark.parametrize("whys, kind, words", [
    (["starting container failed: error while mounting volume '/var/lib/docker/volumes/x/_data': failed to mount "
      "local volume: mount :/export/mounts/a:/var/lib/docker/volumes/x/_data, data: addr=10.0.0.5: "
      "unknown filesystem type 'nfs'"] * 2, swarm.VolumeUnmountable,
     ["shared volume could not be mounted", "unknown filesystem type 'nfs'", "--volume-opt"]),
    (["the node is down", "the node is down"], swarm.NodeLost, ["2 times", "node-a: the node is down",
                                                               "no other node holds its image"]),
    (["the node is down", "failed to mount local volume"], swarm.NodeLost, ["no other node holds its image"]),
])
def test_a_step_whose_tries_all_failed_names_the_cause(whys, kind, words):
    engine = swarm.SwarmEngine(base=None, volume=swarm.SharedVolume(Path("/shared")), retries=1)
    lost = [(f"id{i}", f"node-{'ab'[i]}", why) for i, why in enumerate(whys)]
    exc = engine._lost(spec(), lost, others=[])
    assert type(exc) is kind and all(w in str(exc) for w in words), str(exc)
    assert str(exc).startswith("keras_to_tflite: ")


def test_a_node_lost_with_retries_left_elsewhere_says_the_retry_limit():
    engine = swarm.SwarmEngine(base=None, volume=swarm.SharedVolume(Path("/shared")), retries=1)
    exc = engine._lost(spec(), [("i", "n1", "the node is down"), ("j", "n2", "rejected")], others=["n3"])
    assert isinstance(exc, swarm.NodeLost) and "(--retries 1)" in str(exc)
