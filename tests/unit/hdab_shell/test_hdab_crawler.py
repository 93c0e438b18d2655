"""The federated catalogue crawl: entries read back from holders' HealthDCAT-AP, stale on failure, export."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from rdflib import URIRef
from rdflib.namespace import DCAT, RDF

from d4h.catalog import dataset_graph
from d4h.catalog.healthdcat import to_jsonld
from d4h.errors import Unavailable
from d4h.hdab import CatalogueQuery, FederatedCatalogue, search
from d4h.hdab.crawler import crawl_holder, entry_from_graph, national_graph
from tests.unit.catalog.catalog_factories import HDAB_AGENT, description

HOLDER = "did:web:hospital-a.example"
BASE = "https://hospital-a.example"
T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def _documents() -> dict[str, dict[str, Any]]:
    out = {}
    for key, changes in (
        ("diabetes-a", {}),
        (
            "cancer-a",
            {"title": "Breast cancer toxicity", "health_themes": ("CANCER",), "keywords": ("oncology",)},
        ),
    ):
        desc = description(key, **changes)
        out[f"{BASE}/catalog/healthdcat/{key}.jsonld"] = to_jsonld(dataset_graph(desc))
    return out


def _fetch_catalog(ids: list[str]) -> Any:
    def fetch(base_url: str, holder: str) -> dict[str, Any]:
        assert (base_url, holder) == (BASE, HOLDER)
        return {"@type": "Catalog", "dataset": [{"@id": i} for i in ids]}

    return fetch


def _crawl(catalogue: FederatedCatalogue, at: datetime, fetch_catalog: Any) -> Any:
    return crawl_holder(
        catalogue,
        holder=HOLDER,
        base_url=BASE,
        at=at,
        fetch_catalog=fetch_catalog,
        fetch_json=lambda url: _documents()[url],
    )


def test_entry_reads_title_facets_population_and_period_when_description_is_complete() -> None:
    desc = description("diabetes-a")
    entry = entry_from_graph(dataset_graph(desc), dataset_id="diabetes-a", holder=HOLDER, at=T0)
    assert entry.title == desc.title
    assert set(entry.keywords) == set(desc.keywords)
    assert entry.health_categories == tuple(sorted(desc.health_categories))
    assert entry.themes == tuple(sorted(desc.health_themes))
    assert entry.population == desc.number_of_unique_individuals
    assert entry.temporal_start == desc.temporal_start
    assert entry.holder_name == "Hospital A"


def test_crawl_finds_the_datasets_the_holder_lists_when_it_answers() -> None:
    catalogue, docs = _crawl(FederatedCatalogue(), T0, _fetch_catalog(["diabetes-a", "cancer-a"]))
    assert {e.dataset_id for e in catalogue.entries} == {"diabetes-a", "cancer-a"}
    assert len(docs) == 2
    hits = search(catalogue, CatalogueQuery(text="cancer")).hits
    assert [h.dataset_id for h in hits] == ["cancer-a"]
    themed = search(catalogue, CatalogueQuery(themes=("DIABETES",))).hits
    assert [h.dataset_id for h in themed] == ["diabetes-a"]


def test_down_holder_keeps_its_entries_marked_stale_when_a_crawl_fails() -> None:
    catalogue, _ = _crawl(FederatedCatalogue(), T0, _fetch_catalog(["diabetes-a"]))

    def down(base_url: str, holder: str) -> dict[str, Any]:
        raise Unavailable("peer unreachable")

    later, docs = _crawl(catalogue, T0 + timedelta(hours=1), down)
    assert docs == {}
    assert [(e.dataset_id, e.stale) for e in later.entries] == [("diabetes-a", True)]
    status = later.status(HOLDER)
    assert status is not None and status.stale and "unreachable" in (status.error or "")
    assert status.last_success == T0


def test_national_graph_links_every_crawled_dataset_when_exported() -> None:
    iri = "https://hdab.example/api/v1/hdab/catalogue"
    graph = national_graph(_documents().values(), iri=iri, title="National catalogue", publisher=HDAB_AGENT)
    assert (URIRef(iri), RDF.type, DCAT.Catalog) in graph
    linked = set(graph.objects(URIRef(iri), DCAT.dataset))
    assert linked == {
        URIRef("https://hospital-a.example/datasets/diabetes-a"),
        URIRef("https://hospital-a.example/datasets/cancer-a"),
    }
