"""Fixtures for holder tests: a node secret, a mapper and a small synthetic FHIR population."""

from __future__ import annotations

from pathlib import Path

import pytest

from d4h.holder.omop_map import Mapper
from d4h.holder.pseudonymise import NodeSecret
from d4h.holder.synthetic.generator import synthesize
from d4h.holder.vocabulary import Vocabulary

TOKEN_KEY = bytes(range(32))


@pytest.fixture
def secret() -> NodeSecret:
    return NodeSecret((b"unit-test-node-key-0123456789abc",))


@pytest.fixture
def mapper(secret: NodeSecret) -> Mapper:
    return Mapper(secret, Vocabulary(), TOKEN_KEY)


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    synthesize(out, patients=120, seed=7, site="site-a")
    return out
