"""The model card of a federated model: intended use, per-holder provenance, training, metrics, DP, review.

A model leaves the platform only through disclosure review: the card records the reviewers and the decision,
and ``releasable`` holds only after two distinct reviewers approved (the OpenSAFELY two-person rule). Intended
use is fixed to research: these models are not medical devices.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from d4h.clock import utc_iso
from d4h.errors import IllegalTransition, UserError

INTENDED_USE = "research only; not for clinical decisions on individual patients"
MIN_REVIEWERS = 2


class ReviewStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


@dataclass(frozen=True)
class HolderProvenance:
    """Which data of one holder trained the model, under which agreement and permit."""

    holder_id: str
    n_rows: int
    n_events: int | None = None
    agreement_id: str = ""
    permit_id: str = ""
    dataset_id: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "holder_id": self.holder_id,
            "n_rows": self.n_rows,
            "n_events": self.n_events,
            "agreement_id": self.agreement_id,
            "permit_id": self.permit_id,
            "dataset_id": self.dataset_id,
        }


@dataclass(frozen=True)
class Metric:
    """One performance figure with its interval; ``holder`` set for per-holder (external) validation."""

    name: str
    value: float
    lower: float | None = None
    upper: float | None = None
    holder: str | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "lower": self.lower,
            "upper": self.upper,
            "holder": self.holder,
            "note": self.note,
        }


@dataclass(frozen=True)
class DisclosureReview:
    status: ReviewStatus = ReviewStatus.PENDING
    reviewers: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelCard:
    name: str
    version: str
    created_at: datetime
    model: Mapping[str, Any]
    training: Mapping[str, Any]
    provenance: tuple[HolderProvenance, ...]
    metrics: tuple[Metric, ...] = ()
    dp: Mapping[str, Any] | None = None  # the accountant's statement, or None without DP
    review: DisclosureReview = field(default_factory=DisclosureReview)
    intended_use: str = INTENDED_USE
    caveats: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.created_at.tzinfo is None:
            raise UserError("a model card needs a timezone-aware creation time")
        if not self.provenance:
            raise UserError("a model card needs the provenance of at least one holder")

    @property
    def n_rows(self) -> int:
        return sum(p.n_rows for p in self.provenance)

    @property
    def releasable(self) -> bool:
        return (
            self.review.status is ReviewStatus.APPROVED and len(set(self.review.reviewers)) >= MIN_REVIEWERS
        )

    def approve(self, reviewer: str, note: str = "") -> ModelCard:
        """Record one reviewer's approval; the card is approved once two distinct reviewers agree."""
        self._open_for_review("approve")
        if reviewer in self.review.reviewers:
            raise UserError(f"reviewer {reviewer} already approved this model; a second person is needed")
        reviewers = (*self.review.reviewers, reviewer)
        status = ReviewStatus.APPROVED if len(reviewers) >= MIN_REVIEWERS else ReviewStatus.PENDING
        notes = (*self.review.notes, note) if note else self.review.notes
        return replace(self, review=DisclosureReview(status, reviewers, notes))

    def reject(self, reviewer: str, reason: str) -> ModelCard:
        """Any one reviewer can reject; a rejected model is never released."""
        self._open_for_review("reject")
        if not reason:
            raise UserError("a rejection needs a reason")
        return replace(
            self,
            review=DisclosureReview(
                ReviewStatus.REJECTED, (*self.review.reviewers, reviewer), (*self.review.notes, reason)
            ),
        )

    def _open_for_review(self, target: str) -> None:
        if self.review.status is not ReviewStatus.PENDING:
            raise IllegalTransition(f"model card {self.name}", self.review.status.value, target)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "created_at": utc_iso(self.created_at),
            "intended_use": self.intended_use,
            "model": dict(self.model),
            "training": dict(self.training),
            "data_provenance": [p.as_dict() for p in self.provenance],
            "n_rows": self.n_rows,
            "metrics": [m.as_dict() for m in self.metrics],
            "differential_privacy": dict(self.dp) if self.dp is not None else None,
            "disclosure_review": {
                "status": self.review.status.value,
                "reviewers": list(self.review.reviewers),
                "notes": list(self.review.notes),
                "releasable": self.releasable,
            },
            "caveats": list(self.caveats),
        }

    def to_markdown(self) -> str:
        """A human-readable card for the researcher and the output checkers."""
        lines = [
            f"# Model card: {self.name} {self.version}",
            "",
            f"- Intended use: {self.intended_use}",
            f"- Created: {utc_iso(self.created_at)}",
            f"- Model: {', '.join(f'{k}={v}' for k, v in self.model.items())}",
            f"- Disclosure review: {self.review.status.value}"
            + (f" by {', '.join(self.review.reviewers)}" if self.review.reviewers else ""),
            "",
            "## Data provenance",
            "| Holder | Rows | Events | Agreement | Permit |",
            "|---|---|---|---|---|",
        ]
        for p in self.provenance:
            events = "" if p.n_events is None else str(p.n_events)
            lines.append(f"| {p.holder_id} | {p.n_rows} | {events} | {p.agreement_id} | {p.permit_id} |")
        lines += ["", "## Training", *(f"- {k}: {v}" for k, v in self.training.items()), "", "## Metrics"]
        for m in self.metrics:
            ci = f" ({m.lower:.3f}-{m.upper:.3f})" if m.lower is not None and m.upper is not None else ""
            where = f" [{m.holder}]" if m.holder else ""
            lines.append(f"- {m.name}{where}: {m.value:.4f}{ci}{' ' + m.note if m.note else ''}")
        lines += ["", "## Differential privacy"]
        if self.dp is None:
            lines.append("- none (the model is released only after disclosure review)")
        else:
            lines += [f"- {k}: {v}" for k, v in self.dp.items()]
        if self.caveats:
            lines += ["", "## Caveats", *(f"- {c}" for c in self.caveats)]
        return "\n".join(lines) + "\n"


def model_card(
    name: str,
    version: str,
    created_at: datetime,
    *,
    model: Mapping[str, Any],
    training: Mapping[str, Any],
    provenance: Sequence[HolderProvenance],
    metrics: Sequence[Metric] = (),
    dp: Mapping[str, Any] | None = None,
    caveats: Sequence[str] = (),
) -> ModelCard:
    """A new card, pending disclosure review."""
    return ModelCard(
        name,
        version,
        created_at,
        dict(model),
        dict(training),
        tuple(provenance),
        tuple(metrics),
        dict(dp) if dp is not None else None,
        DisclosureReview(),
        INTENDED_USE,
        tuple(caveats),
    )
