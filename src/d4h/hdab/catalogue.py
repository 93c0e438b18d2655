"""The HDAB's federated catalogue: merge holders' crawled entries, mark stale holders, search with facets.

Each crawl of a holder's catalog replaces that holder's entries (datasets it no longer lists disappear).
A failed crawl keeps the last known entries and marks them stale, so a node that is down stays findable
but flagged. Search is full text (every query word must start a word of the entry) with disjunctive
facets: each facet counts the hits of every other filter, so choosing one value does not hide the rest.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from d4h.catalog.healthdcat import DatasetDescription
from d4h.errors import UserError
from d4h.hdab.applications import ApplicationForm

FACETS = (
    "health_category",
    "theme",
    "holder",
    "population",
    "time_coverage",
    "access_rights",
    "coding_system",
)
# Population facet buckets (unique individuals): [low, high) with None for open-ended.
POPULATION_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("<1k", 0, 1_000),
    ("1k-10k", 1_000, 10_000),
    ("10k-100k", 10_000, 100_000),
    (">=100k", 100_000, None),
)
_WORD = re.compile(r"[a-z0-9]+")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CatalogueEntry(_Frozen):
    """One dataset as the federated catalogue knows it, with when it was last seen at its holder."""

    dataset_id: str = Field(min_length=1)
    holder: str = Field(min_length=1)
    holder_name: str = ""
    title: str
    description: str = ""
    keywords: tuple[str, ...] = ()
    health_categories: tuple[str, ...] = ()
    themes: tuple[str, ...] = ()
    population: int | None = Field(default=None, ge=0)
    temporal_start: date | None = None
    temporal_end: date | None = None
    access_rights: str = "NON_PUBLIC"
    coding_systems: tuple[str, ...] = ()
    last_seen: datetime
    stale: bool = False


def entry_from_description(
    desc: DatasetDescription, *, dataset_id: str, holder: str, seen_at: datetime
) -> CatalogueEntry:
    """The catalogue entry of a holder's HealthDCAT-AP description."""
    return CatalogueEntry(
        dataset_id=dataset_id,
        holder=holder,
        holder_name=desc.custodian.name if desc.custodian else desc.publisher.name,
        title=desc.title,
        description=desc.description,
        keywords=desc.keywords,
        health_categories=desc.health_categories,
        themes=desc.health_themes,
        population=desc.number_of_unique_individuals,
        temporal_start=desc.temporal_start,
        temporal_end=desc.temporal_end,
        access_rights="NON_PUBLIC",
        coding_systems=desc.coding_systems,
        last_seen=seen_at,
    )


class HolderStatus(_Frozen):
    holder: str
    last_attempt: datetime
    last_success: datetime | None = None
    error: str | None = None
    stale: bool = False


class FederatedCatalogue(_Frozen):
    entries: tuple[CatalogueEntry, ...] = ()
    holders: tuple[HolderStatus, ...] = ()

    def status(self, holder: str) -> HolderStatus | None:
        return next((h for h in self.holders if h.holder == holder), None)

    def of_holder(self, holder: str) -> tuple[CatalogueEntry, ...]:
        return tuple(e for e in self.entries if e.holder == holder)


def merge_crawl(
    catalogue: FederatedCatalogue,
    *,
    holder: str,
    at: datetime,
    entries: Sequence[CatalogueEntry] | None,
    error: str | None = None,
) -> FederatedCatalogue:
    """Fold one crawl in: ``entries`` replaces the holder's entries; ``None`` (a failure) marks them stale."""
    previous = catalogue.status(holder)
    others = tuple(e for e in catalogue.entries if e.holder != holder)
    if entries is None:
        kept = tuple(e.model_copy(update={"stale": True}) for e in catalogue.of_holder(holder))
        status = HolderStatus(
            holder=holder,
            last_attempt=at,
            last_success=previous.last_success if previous else None,
            error=error or "crawl failed",
            stale=True,
        )
    else:
        wrong = [e.dataset_id for e in entries if e.holder != holder]
        if wrong:
            raise UserError(f"crawl of {holder} returned entries of other holders: {wrong}")
        ids = [e.dataset_id for e in entries]
        if len(set(ids)) != len(ids):
            raise UserError(f"crawl of {holder} lists a dataset twice")
        kept = tuple(e.model_copy(update={"last_seen": at, "stale": False}) for e in entries)
        status = HolderStatus(holder=holder, last_attempt=at, last_success=at)
    statuses = (*(h for h in catalogue.holders if h.holder != holder), status)
    return FederatedCatalogue(entries=others + kept, holders=statuses)


def mark_stale(catalogue: FederatedCatalogue, *, now: datetime, max_age: timedelta) -> FederatedCatalogue:
    """Flag holders (and their entries) not successfully crawled within ``max_age``."""
    stale = {h.holder for h in catalogue.holders if h.last_success is None or now - h.last_success > max_age}
    return FederatedCatalogue(
        entries=tuple(
            e.model_copy(update={"stale": e.stale or e.holder in stale}) for e in catalogue.entries
        ),
        holders=tuple(
            h.model_copy(update={"stale": h.stale or h.holder in stale}) for h in catalogue.holders
        ),
    )


class CatalogueQuery(_Frozen):
    """Full text plus facet filters; a filter with several values matches any of them."""

    text: str = ""
    health_categories: tuple[str, ...] = ()
    themes: tuple[str, ...] = ()
    holders: tuple[str, ...] = ()
    min_population: int | None = Field(default=None, ge=0)
    max_population: int | None = Field(default=None, ge=0)
    covers_from: date | None = None
    covers_to: date | None = None
    access_rights: tuple[str, ...] = ()
    coding_systems: tuple[str, ...] = ()
    include_stale: bool = True
    offset: int = Field(default=0, ge=0)
    limit: int = Field(default=50, ge=1, le=1000)


class SearchResult(_Frozen):
    total: int
    hits: tuple[CatalogueEntry, ...]
    facets: Mapping[str, Mapping[str, int]]


def search(catalogue: FederatedCatalogue, query: CatalogueQuery) -> SearchResult:
    """Ranked hits (title words weigh most) with one page of results and counts for every facet."""
    terms = _words(query.text)
    scored = [(_score(e, terms), e) for e in catalogue.entries if query.include_stale or not e.stale]
    matched = [(s, e) for s, e in scored if s is not None]
    hits = [
        e for _, e in sorted(matched, key=lambda se: (-(se[0] or 0), se[1].title.lower(), se[1].dataset_id))
    ]
    filtered = [e for e in hits if _passes(e, query, skip=None)]
    facets = {name: _facet(name, (e for e in hits if _passes(e, query, skip=name))) for name in FACETS}
    page = tuple(filtered[query.offset : query.offset + query.limit])
    return SearchResult(total=len(filtered), hits=page, facets=facets)


def unknown_datasets(form: ApplicationForm, catalogue: FederatedCatalogue) -> tuple[str, ...]:
    """Datasets an application names that the catalogue does not list under the named holder."""
    listed = {(e.holder, e.dataset_id) for e in catalogue.entries}
    return tuple(d.dataset_id for d in form.datasets if (d.holder, d.dataset_id) not in listed)


def population_bucket(population: int | None) -> str | None:
    if population is None:
        return None
    return next(
        label
        for label, low, high in POPULATION_BUCKETS
        if population >= low and (high is None or population < high)
    )


def _facet(name: str, entries: Iterable[CatalogueEntry]) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for entry in entries:
        counts.update(_facet_values(name, entry))
    return dict(sorted(counts.items()))


def _facet_values(name: str, entry: CatalogueEntry) -> set[str]:
    if name == "health_category":
        return set(entry.health_categories)
    if name == "theme":
        return set(entry.themes)
    if name == "holder":
        return {entry.holder}
    if name == "population":
        bucket = population_bucket(entry.population)
        return {bucket} if bucket else set()
    if name == "time_coverage":
        if entry.temporal_start is None or entry.temporal_end is None:
            return set()
        return {str(year) for year in range(entry.temporal_start.year, entry.temporal_end.year + 1)}
    if name == "access_rights":
        return {entry.access_rights}
    return set(entry.coding_systems)


def _passes(entry: CatalogueEntry, q: CatalogueQuery, *, skip: str | None) -> bool:
    checks = {
        "health_category": not q.health_categories
        or bool(set(q.health_categories) & set(entry.health_categories)),
        "theme": not q.themes or bool(set(q.themes) & set(entry.themes)),
        "holder": not q.holders or entry.holder in q.holders,
        "population": _population_ok(entry.population, q),
        "time_coverage": _covers(entry, q),
        "access_rights": not q.access_rights or entry.access_rights in q.access_rights,
        "coding_system": not q.coding_systems or bool(set(q.coding_systems) & set(entry.coding_systems)),
    }
    return all(ok for name, ok in checks.items() if name != skip)


def _population_ok(population: int | None, q: CatalogueQuery) -> bool:
    if q.min_population is None and q.max_population is None:
        return True
    if population is None:
        return False
    return (q.min_population is None or population >= q.min_population) and (
        q.max_population is None or population <= q.max_population
    )


def _covers(entry: CatalogueEntry, q: CatalogueQuery) -> bool:
    """The dataset's time coverage overlaps the asked period (unknown coverage does not match a filter)."""
    if q.covers_from is None and q.covers_to is None:
        return True
    if entry.temporal_start is None or entry.temporal_end is None:
        return False
    return (q.covers_to is None or entry.temporal_start <= q.covers_to) and (
        q.covers_from is None or entry.temporal_end >= q.covers_from
    )


def _score(entry: CatalogueEntry, terms: Sequence[str]) -> int | None:
    """None when a term matches nowhere; otherwise a weight: title 3, keywords/themes/codes 2, text 1."""
    if not terms:
        return 0
    fields = (
        (3, _words(entry.title)),
        (
            2,
            _words(
                " ".join((*entry.keywords, *entry.themes, *entry.health_categories, *entry.coding_systems))
            ),
        ),
        (1, _words(f"{entry.description} {entry.holder_name}")),
    )
    total = 0
    for term in terms:
        weight = max((w for w, words in fields if any(word.startswith(term) for word in words)), default=0)
        if not weight:
            return None
        total += weight
    return total


def _words(text: str) -> list[str]:
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return _WORD.findall(folded)
