"""Builders shared by the policy unit tests: facts at a fixed instant and one-rule policies."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from d4h.policy import Constraint, Facts, Operator, Permission, PermitVerdict, Policy, PresentedPermit

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)

# True / False / undecided-at-catalog leaves for logic tables (with the ``good_facts`` below).
T = Constraint("membership", Operator.EQ, "active")
F = Constraint("membership", Operator.EQ, "revoked")
U = Constraint("purpose", Operator.EQ, "art53-1-e")


def good(**changes: Any) -> Facts:
    """Facts that satisfy a typical health offer; ``changes`` override single fields."""
    facts = Facts(
        now=NOW,
        requester="did:web:research.example",
        roles=frozenset({"data_user"}),
        membership="active",
        country="DE",
        purpose="art53-1-e",
        processing_mode="aggregate-only",
        dataset_id="urn:dataset:1",
        permit=PresentedPermit("urn:permit:1"),
        permit_verdict=PermitVerdict(True, "permit urn:permit:1 verified", "urn:permit:1", "did:web:hdab"),
        agreed_at=datetime(2026, 11, 1, tzinfo=UTC),
    )
    return replace(facts, **changes)


def one_permission(*constraints: Any, uid: str = "urn:policy:1") -> Policy:
    return Policy(uid, permissions=(Permission("use", tuple(constraints)),))
