"""The unit tests' fake engine passes the same contract as the Docker engine (tests/e2e/test_e2e_engine.py)."""

import sys
from pathlib import Path

from fakes import FakeEngine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from engine_contract import check_engine  # noqa: E402


def test_fake_engine_keeps_the_engine_contract(tmp_path):
    image = "orchestrator/tf2:contract"
    check_engine(FakeEngine(images={image: {"id": "sha256:1", "tags": [image], "size": 1, "labels": {}}}), image,
                 tmp_path)
