"""Model cards: provenance and metrics recorded, release only after two-person disclosure review."""

from __future__ import annotations

from datetime import datetime

import pytest

from d4h.clock import FixedClock
from d4h.errors import IllegalTransition, UserError
from d4h.learning.model_card import (
    INTENDED_USE,
    HolderProvenance,
    Metric,
    ModelCard,
    ReviewStatus,
    model_card,
)


def _card(clock: FixedClock) -> ModelCard:
    return model_card(
        "readmission-risk",
        "1.0.0",
        clock.now(),
        model={"kind": "logistic", "n_features": 8},
        training={"algorithm": "fedavg", "rounds": 20},
        provenance=[
            HolderProvenance("hospital-a", 23839, 2101, "agr-1", "permit-7"),
            HolderProvenance("hospital-b", 23838, 2098, "agr-2", "permit-7"),
        ],
        metrics=[
            Metric("auroc", 0.586, 0.579, 0.593),
            Metric("auroc", 0.58, 0.56, 0.60, holder="hospital-b"),
        ],
        dp={"epsilon": 2.1, "delta": 1e-6},
        caveats=["trained on US data 1999-2008"],
    )


def test_card_is_releasable_only_when_two_distinct_reviewers_approved(fixed_clock: FixedClock) -> None:
    card = _card(fixed_clock)
    assert card.review.status is ReviewStatus.PENDING and not card.releasable
    once = card.approve("checker-1")
    assert once.review.status is ReviewStatus.PENDING and not once.releasable
    with pytest.raises(UserError, match="second person"):
        once.approve("checker-1")
    twice = once.approve("checker-2", "no small cells in the metrics")
    assert twice.releasable and twice.review.reviewers == ("checker-1", "checker-2")
    assert not card.releasable  # frozen: the original is unchanged


def test_rejected_card_cannot_be_approved_when_review_is_closed(fixed_clock: FixedClock) -> None:
    rejected = _card(fixed_clock).reject("checker-1", "per-holder AUROC on 12 events")
    assert rejected.review.status is ReviewStatus.REJECTED and not rejected.releasable
    with pytest.raises(IllegalTransition):
        rejected.approve("checker-2")
    with pytest.raises(UserError, match="reason"):
        _card(fixed_clock).reject("checker-1", "")


def test_card_dict_carries_provenance_metrics_and_dp_when_exported(fixed_clock: FixedClock) -> None:
    data = _card(fixed_clock).as_dict()
    assert data["intended_use"] == INTENDED_USE
    assert data["n_rows"] == 23839 + 23838
    assert [p["permit_id"] for p in data["data_provenance"]] == ["permit-7", "permit-7"]
    assert data["data_provenance"][0]["agreement_id"] == "agr-1"
    assert data["metrics"][1]["holder"] == "hospital-b"
    assert data["differential_privacy"] == {"epsilon": 2.1, "delta": 1e-6}
    assert data["disclosure_review"]["releasable"] is False
    assert data["created_at"] == "2026-11-28T12:00:00.000000Z"


def test_markdown_lists_every_holder_and_metric_when_rendered(fixed_clock: FixedClock) -> None:
    text = _card(fixed_clock).to_markdown()
    assert "| hospital-a | 23839 | 2101 | agr-1 | permit-7 |" in text
    assert "auroc [hospital-b]: 0.5800 (0.560-0.600)" in text
    assert "research only" in text and "trained on US data" in text


def test_card_is_refused_when_provenance_or_timezone_is_missing(fixed_clock: FixedClock) -> None:
    with pytest.raises(UserError, match="provenance"):
        model_card("m", "1", fixed_clock.now(), model={}, training={}, provenance=[])
    with pytest.raises(UserError, match="timezone"):
        model_card(
            "m", "1", datetime(2026, 1, 1), model={}, training={}, provenance=[HolderProvenance("h", 10)]
        )
