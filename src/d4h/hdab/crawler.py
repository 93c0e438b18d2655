"""The HDAB's federated catalogue crawler and the national HealthDCAT-AP export built from what it found.

Members that hold data (ISSUED membership with role dataHolder) are crawled on a schedule: their DSP
catalog (DCP-authenticated) says which datasets this HDAB may see, each dataset's public HealthDCAT-AP
description gives the metadata. A holder that cannot be reached keeps its last entries, marked stale.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from typing import Any

import httpx
from rdflib import Graph, Literal, URIRef
from rdflib.namespace import DCAT, DCTERMS, SKOS

from d4h.catalog.healthdcat import HEALTHDCATAP, Agent, catalogue_graph, from_jsonld
from d4h.dsp.messages import DSP_CONTEXT
from d4h.errors import D4HError
from d4h.hdab.catalogue import CatalogueEntry, FederatedCatalogue, merge_crawl
from d4h.store import leases
from d4h.store.db import transaction

_log = logging.getLogger("d4h.hdab")

# Fetches a holder's DSP catalog as this node: (holder base URL, holder DID) -> catalog JSON.
CatalogFetch = Callable[[str, str], Mapping[str, Any]]
# Fetches a public JSON document (the holder's HealthDCAT-AP description).
JsonFetch = Callable[[str], Mapping[str, Any]]


def catalog_request() -> dict[str, Any]:
    return {"@context": [DSP_CONTEXT], "@type": "CatalogRequestMessage"}


def graph_key(holder: str, dataset_id: str) -> str:
    """The storage key of one dataset's description (fixed length whatever the ids)."""
    return "ds:" + hashlib.sha256(f"{holder}\n{dataset_id}".encode()).hexdigest()[:40]


def crawl_holder(
    catalogue: FederatedCatalogue,
    *,
    holder: str,
    base_url: str,
    at: datetime,
    fetch_catalog: CatalogFetch,
    fetch_json: JsonFetch,
) -> tuple[FederatedCatalogue, dict[str, dict[str, Any]]]:
    """Crawl one holder: the merged catalogue and the descriptions fetched (by ``graph_key``)."""
    try:
        catalog = fetch_catalog(base_url, holder)
        ids = [str(d["@id"]) for d in catalog.get("dataset", []) if isinstance(d, Mapping) and "@id" in d]
        entries, documents = [], {}
        for dataset_id in ids:
            document = dict(fetch_json(f"{base_url}/catalog/healthdcat/{dataset_id}.jsonld"))
            entries.append(
                entry_from_graph(from_jsonld(document), dataset_id=dataset_id, holder=holder, at=at)
            )
            documents[graph_key(holder, dataset_id)] = document
    except (D4HError, httpx.HTTPError, KeyError, TypeError, ValueError) as exc:
        message = getattr(exc, "message", None) or str(exc)
        return merge_crawl(catalogue, holder=holder, at=at, entries=None, error=message[:500]), {}
    return merge_crawl(catalogue, holder=holder, at=at, entries=entries), documents


def entry_from_graph(graph: Graph, *, dataset_id: str, holder: str, at: datetime) -> CatalogueEntry:
    """A search entry read back from a holder's HealthDCAT-AP description of one dataset."""
    ds = next(
        (s for s in graph.subjects(DCTERMS.identifier, Literal(dataset_id)) if isinstance(s, URIRef)),
        None,
    )
    if ds is None:
        raise ValueError(f"the description of {dataset_id} has no dataset with that identifier")

    def text(prop: URIRef) -> str:
        return next((str(o) for o in graph.objects(ds, prop)), "")

    def codes(prop: URIRef) -> tuple[str, ...]:
        return tuple(sorted(str(graph.value(o, SKOS.prefLabel) or o) for o in graph.objects(ds, prop)))

    population = graph.value(ds, HEALTHDCATAP.numberOfUniqueIndividuals)
    period = graph.value(ds, DCTERMS.temporal)
    publisher = graph.value(ds, DCTERMS.publisher)
    return CatalogueEntry(
        dataset_id=dataset_id,
        holder=holder,
        holder_name=str(graph.value(publisher, _FOAF_NAME) or "") if publisher is not None else "",
        title=text(DCTERMS.title) or dataset_id,
        description=text(DCTERMS.description),
        keywords=tuple(sorted(str(k) for k in graph.objects(ds, DCAT.keyword))),
        health_categories=codes(HEALTHDCATAP.healthCategory),
        themes=codes(HEALTHDCATAP.healthTheme),
        population=int(str(population)) if population is not None else None,
        temporal_start=_date(graph.value(period, DCAT.startDate)) if period is not None else None,
        temporal_end=_date(graph.value(period, DCAT.endDate)) if period is not None else None,
        coding_systems=codes(HEALTHDCATAP.hasCodingSystem),
        last_seen=at,
    )


def national_graph(
    documents: Iterable[Mapping[str, Any]], *, iri: str, title: str, publisher: Agent
) -> Graph:
    """The national catalogue: a ``dcat:Catalog`` over every crawled description (HealthDCAT-AP)."""
    graph = catalogue_graph(
        [],
        iri=iri,
        title=title,
        description="National catalogue of health datasets for secondary use, federated by the HDAB.",
        publisher=publisher,
    )
    for document in documents:
        part = from_jsonld(document)
        for ds in part.subjects(DCTERMS.identifier, None):
            if (ds, None, DCAT.Dataset) in part:
                graph.add((URIRef(iri), DCAT.dataset, ds))
        graph += part
    return graph


class CatalogueCrawler:
    """A worker job: crawl every data-holding member under a lease, so one process crawls at a time."""

    name = "hdab-catalogue-crawl"

    def __init__(
        self,
        *,
        hdab: Any,  # HdabService (typed loosely to avoid an import cycle with the node)
        members: Callable[[], list[tuple[str, str]]],
        fetch_catalog: CatalogFetch,
        fetch_json: JsonFetch,
        engine: Any,
        instance_id: str,
        lease_s: float,
    ) -> None:
        self._hdab = hdab
        self._members = members
        self._fetch_catalog = fetch_catalog
        self._fetch_json = fetch_json
        self._engine = engine
        self._instance = instance_id
        self._lease_s = lease_s

    def run_once(self) -> int:
        with transaction(self._engine) as conn:
            if not leases.acquire(
                conn, "hdab-crawl", "national", self._instance, now=time.time(), duration=self._lease_s
            ):
                return 0
        try:
            return self.crawl()
        finally:
            with transaction(self._engine) as conn:
                leases.release(conn, "hdab-crawl", "national", self._instance)

    def crawl(self) -> int:
        store = self._hdab.store
        catalogue = store.catalogue()
        documents: dict[str, dict[str, Any]] = {}
        members = self._members()
        for holder, base_url in members:
            catalogue, found = crawl_holder(
                catalogue,
                holder=holder,
                base_url=base_url,
                at=self._hdab.clock.now(),
                fetch_catalog=self._fetch_catalog,
                fetch_json=self._fetch_json,
            )
            documents.update(found)
            status = catalogue.status(holder)
            if status is not None and status.error:
                _log.warning("catalogue crawl failed", extra={"holder": holder, "error": status.error})
        with transaction(self._engine) as conn:
            store.save_catalogue(catalogue, conn)
            for key, document in documents.items():
                store.save_description(key, document, conn)
        return len(members)


_FOAF_NAME = URIRef("http://xmlns.com/foaf/0.1/name")


def _date(value: Any) -> date | None:
    if value is None:
        return None
    return date.fromisoformat(str(value)[:10])
