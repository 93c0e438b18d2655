"""The federated catalogue: crawl merges, stale holders, full-text search and disjunctive facets."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from d4h.errors import UserError
from d4h.hdab import (
    CatalogueEntry,
    CatalogueQuery,
    DatasetRef,
    FederatedCatalogue,
    entry_from_description,
    mark_stale,
    merge_crawl,
    search,
    unknown_datasets,
)
from d4h.hdab.catalogue import population_bucket
from tests.unit.catalog.catalog_factories import description
from tests.unit.hdab.hdab_factories import make_form

A = "did:web:hospital-a.example"
B = "did:web:hospital-b.example"
R = "did:web:registry.example"
T = datetime(2027, 5, 1, 6, 0, tzinfo=UTC)


def _entry(dataset_id: str, holder: str, **changes: object) -> CatalogueEntry:
    values: dict[str, object] = {
        "dataset_id": dataset_id,
        "holder": holder,
        "title": dataset_id,
        "last_seen": T,
    }
    values.update(changes)
    return CatalogueEntry.model_validate(values)


def _national() -> FederatedCatalogue:
    a = [
        entry_from_description(description(), dataset_id="a-diab", holder=A, seen_at=T),
        _entry(
            "a-onco",
            A,
            title="Breast tumour treatment and toxicity",
            description="Chemotherapy regimens with CTCAE grades",
            keywords=("oncology",),
            health_categories=("EHRS",),
            themes=("CANCER",),
            population=850,
            temporal_start=date(2019, 1, 1),
            temporal_end=date(2021, 6, 30),
            coding_systems=("ICD-10",),
        ),
    ]
    b = [
        _entry(
            "b-diab",
            B,
            holder_name="Hôpital B",
            title="Diabète de type 1, données de capteurs CGM",
            description="Continuous glucose monitoring for children with type 1 diabetes",
            keywords=("diabetes", "CGM"),
            health_categories=("EHRS", "MEDICAL_DEVICES"),
            themes=("DIABETES",),
            population=300,
            temporal_start=date(2022, 1, 1),
            temporal_end=date(2025, 12, 31),
            coding_systems=("LOINC",),
        )
    ]
    r = [
        _entry(
            "r-cancer",
            R,
            title="National cancer registry",
            description="All incident cancers; includes diabetes as a comorbidity field",
            health_categories=("REGISTRY",),
            themes=("CANCER",),
            population=250_000,
            temporal_start=date(2000, 1, 1),
            temporal_end=date(2024, 12, 31),
            coding_systems=("ICD-10", "ICD-O-3"),
            access_rights="RESTRICTED",
        )
    ]
    catalogue = FederatedCatalogue()
    for holder, entries in ((A, a), (B, b), (R, r)):
        catalogue = merge_crawl(catalogue, holder=holder, at=T, entries=entries)
    return catalogue


class TestMerge:
    def test_entry_from_description_carries_facet_fields_when_built(self) -> None:
        entry = entry_from_description(description(), dataset_id="a-diab", holder=A, seen_at=T)
        assert (entry.holder_name, entry.population, entry.themes) == ("Hospital A", 4200, ("DIABETES",))
        assert entry.coding_systems == ("SNOMED-CT", "LOINC")
        assert (entry.temporal_start, entry.access_rights) == (date(2015, 1, 1), "NON_PUBLIC")

    def test_crawl_replaces_holder_entries_when_holder_answers(self) -> None:
        catalogue = _national()
        later = T + timedelta(hours=6)
        catalogue = merge_crawl(catalogue, holder=A, at=later, entries=[_entry("a-new", A)])
        assert {e.dataset_id for e in catalogue.of_holder(A)} == {"a-new"}
        assert catalogue.of_holder(A)[0].last_seen == later
        assert {e.dataset_id for e in catalogue.of_holder(B)} == {"b-diab"}  # others untouched

    def test_failed_crawl_keeps_last_known_entries_marked_stale_when_holder_is_down(self) -> None:
        catalogue = merge_crawl(
            _national(), holder=B, at=T + timedelta(hours=6), entries=None, error="timeout"
        )
        (entry,) = catalogue.of_holder(B)
        assert (entry.dataset_id, entry.stale, entry.last_seen) == ("b-diab", True, T)
        status = catalogue.status(B)
        assert status is not None
        assert (status.stale, status.error, status.last_success) == (True, "timeout", T)
        assert not any(e.stale for e in catalogue.of_holder(A))

    def test_successful_crawl_clears_stale_flag_when_holder_is_back(self) -> None:
        down = merge_crawl(_national(), holder=B, at=T + timedelta(hours=1), entries=None)
        back = merge_crawl(down, holder=B, at=T + timedelta(hours=2), entries=[_entry("b-diab", B)])
        assert not back.of_holder(B)[0].stale
        assert back.status(B) is not None and not back.status(B).stale  # type: ignore[union-attr]

    def test_mark_stale_flags_holders_when_not_crawled_within_max_age(self) -> None:
        catalogue = merge_crawl(_national(), holder=A, at=T + timedelta(days=2), entries=[_entry("a-x", A)])
        marked = mark_stale(catalogue, now=T + timedelta(days=2), max_age=timedelta(days=1))
        assert {e.holder for e in marked.entries if e.stale} == {B, R}

    def test_crawl_is_refused_when_it_returns_other_holders_entries(self) -> None:
        with pytest.raises(UserError, match="other holders"):
            merge_crawl(FederatedCatalogue(), holder=A, at=T, entries=[_entry("x", B)])

    def test_crawl_is_refused_when_it_lists_a_dataset_twice(self) -> None:
        with pytest.raises(UserError, match="twice"):
            merge_crawl(FederatedCatalogue(), holder=A, at=T, entries=[_entry("x", A), _entry("x", A)])


class TestSearch:
    def _ids(self, query: CatalogueQuery) -> list[str]:
        return [e.dataset_id for e in search(_national(), query).hits]

    def test_text_finds_every_holder_when_words_match(self) -> None:
        assert set(self._ids(CatalogueQuery(text="diabetes"))) == {"a-diab", "b-diab", "r-cancer"}

    def test_title_match_ranks_first_when_word_is_in_title(self) -> None:
        ids = self._ids(CatalogueQuery(text="cancer"))
        assert ids[0] == "r-cancer"  # title; a-onco matches only through its theme
        assert set(ids) == {"r-cancer", "a-onco"}

    def test_text_needs_every_word_when_several_are_given(self) -> None:
        assert self._ids(CatalogueQuery(text="diabetes glucose")) == ["b-diab"]

    def test_text_ignores_accents_and_case_when_matching(self) -> None:
        assert self._ids(CatalogueQuery(text="DIABÈTE capteur")) == ["b-diab"]
        assert self._ids(CatalogueQuery(text="hopital")) == ["b-diab"]

    def test_text_matches_word_prefixes_when_word_is_partial(self) -> None:
        assert self._ids(CatalogueQuery(text="chemo")) == ["a-onco"]

    def test_empty_text_returns_everything_when_no_filter_is_set(self) -> None:
        assert search(_national(), CatalogueQuery()).total == 4

    @pytest.mark.parametrize(
        ("query", "expected"),
        [
            (CatalogueQuery(health_categories=("MEDICAL_DEVICES",)), {"b-diab"}),
            (CatalogueQuery(themes=("CANCER",)), {"a-onco", "r-cancer"}),
            (CatalogueQuery(holders=(A,)), {"a-diab", "a-onco"}),
            (CatalogueQuery(min_population=1000), {"a-diab", "r-cancer"}),
            (CatalogueQuery(min_population=500, max_population=5000), {"a-diab", "a-onco"}),
            (CatalogueQuery(covers_from=date(2025, 1, 1)), {"b-diab"}),
            (
                CatalogueQuery(covers_from=date(2020, 1, 1), covers_to=date(2020, 12, 31)),
                {"a-diab", "a-onco", "r-cancer"},
            ),
            (CatalogueQuery(access_rights=("RESTRICTED",)), {"r-cancer"}),
            (CatalogueQuery(coding_systems=("LOINC",)), {"a-diab", "b-diab"}),
            (
                CatalogueQuery(text="diabetes", themes=("DIABETES",), coding_systems=("LOINC",)),
                {"a-diab", "b-diab"},
            ),
        ],
    )
    def test_filters_narrow_hits_when_facet_values_are_chosen(
        self, query: CatalogueQuery, expected: set[str]
    ) -> None:
        assert set(self._ids(query)) == expected

    def test_stale_entries_are_hidden_when_asked_to_exclude_them(self) -> None:
        catalogue = merge_crawl(_national(), holder=B, at=T + timedelta(hours=1), entries=None)
        result = search(catalogue, CatalogueQuery(text="diabetes", include_stale=False))
        assert {e.dataset_id for e in result.hits} == {"a-diab", "r-cancer"}

    def test_facets_count_hits_when_text_query_is_given(self) -> None:
        facets = search(_national(), CatalogueQuery(text="diabetes")).facets
        assert facets["holder"] == {A: 1, B: 1, R: 1}
        assert facets["theme"] == {"CANCER": 1, "DIABETES": 2}
        assert facets["coding_system"] == {"ICD-10": 1, "ICD-O-3": 1, "LOINC": 2, "SNOMED-CT": 1}
        assert facets["population"] == {"<1k": 1, "1k-10k": 1, ">=100k": 1}
        assert facets["access_rights"] == {"NON_PUBLIC": 2, "RESTRICTED": 1}
        assert facets["time_coverage"]["2015"] == 2 and facets["time_coverage"]["2025"] == 1

    def test_facet_keeps_other_values_when_its_own_filter_is_set(self) -> None:
        result = search(_national(), CatalogueQuery(holders=(A,)))
        assert result.total == 2
        assert result.facets["holder"] == {A: 2, B: 1, R: 1}  # disjunctive: other holders stay countable
        assert result.facets["theme"] == {"CANCER": 1, "DIABETES": 1}  # narrowed by the holder filter

    def test_page_is_cut_when_offset_and_limit_are_given(self) -> None:
        everything = self._ids(CatalogueQuery())
        page = search(_national(), CatalogueQuery(offset=1, limit=2))
        assert [e.dataset_id for e in page.hits] == everything[1:3]
        assert page.total == 4

    @pytest.mark.parametrize(
        ("size", "bucket"), [(None, None), (0, "<1k"), (999, "<1k"), (1000, "1k-10k"), (10**6, ">=100k")]
    )
    def test_population_bucket_has_closed_lower_bound_when_on_edge(
        self, size: int | None, bucket: str | None
    ) -> None:
        assert population_bucket(size) == bucket


def test_unknown_datasets_names_those_not_listed_when_application_is_checked() -> None:
    form = make_form(
        datasets=(
            DatasetRef(dataset_id="a-diab", holder=A),
            DatasetRef(dataset_id="b-diab", holder=A),  # listed, but under another holder
            DatasetRef(dataset_id="zzz", holder=R),
        )
    )
    assert unknown_datasets(form, _national()) == ("b-diab", "zzz")
