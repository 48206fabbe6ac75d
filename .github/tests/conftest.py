"""Fixtures shared by the workflow tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# moto_rehearsal (the moto server the infra tests use) and pg_cluster live there.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "infra" / "tests"))


@pytest.fixture(scope="module")
def moto():
    """A moto server for one test module, started empty (moto_rehearsal.Moto)."""
    from moto_rehearsal import Moto

    server = Moto()
    yield server
    server.stop()
