"""The Docker engine keeps the engine contract the unit tests' fake keeps (tests/engine_contract.py)."""

import sys
from pathlib import Path

import pytest

from orchestrator import images

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from engine_contract import check_engine  # noqa: E402

pytestmark = pytest.mark.e2e


def test_docker_engine_keeps_the_engine_contract(engine, stack_images, tmp_path):
    check_engine(engine, images.get_stack("tf2").tag(), tmp_path)
