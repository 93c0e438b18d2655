"""HealthDCAT-AP Release 8 descriptions: a typed ``DatasetDescription`` to an rdflib graph, JSON-LD and Turtle.

``dataset_graph`` states every property ehds.md 12.2 lists as mandatory for a NON_PUBLIC ``dcat:Dataset``
(title, description, identifier, access rights, applicable legislation, distributions, theme, HDAB with one
contact point, health category, structured-data flag with CSVW variables, contact point, keyword, type,
provenance) plus the recommended health properties the description carries. Every controlled-vocabulary
IRI is stated as a ``skos:Concept`` with ``skos:inScheme`` and ``skos:prefLabel`` in the output, because the
shapes need that and the vocabularies are not fetched. Nodes get IRIs derived from the dataset IRI, so
the same description always gives the same graph and merging re-crawled graphs adds nothing twice.
JSON-LD carries its context inline: nothing is fetched to read or write it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from rdflib import Graph, Literal, Namespace, URIRef
from rdflib.namespace import DCAT, DCTERMS, FOAF, RDF, RDFS, SKOS, XSD

from d4h.errors import UserError

HEALTHDCATAP = Namespace("http://healthdataportal.eu/ns/health#")
DCATAP = Namespace("http://data.europa.eu/r5r/")
CV = Namespace("http://data.europa.eu/m8g/")
VCARD = Namespace("http://www.w3.org/2006/vcard/ns#")
CSVW = Namespace("http://www.w3.org/ns/csvw#")
GEODCATAP = Namespace("http://data.europa.eu/930/")
ELI = Namespace("http://data.europa.eu/eli/ontology#")

EHDS_ELI = "http://data.europa.eu/eli/reg/2025/327/oj"
_EU_NAL = "http://publications.europa.eu/resource/authority/"
_HEALTH_NAL = "https://hdeu-dcat.data.health.europa.eu/resource/authority/"
NON_PUBLIC = _EU_NAL + "access-right/NON_PUBLIC"

# Vocabulary name -> base IRI of its concept scheme.
VOCABULARIES: Mapping[str, str] = {
    "access-right": _EU_NAL + "access-right",
    "data-theme": _EU_NAL + "data-theme",
    "dataset-type": _EU_NAL + "dataset-type",
    "file-type": _EU_NAL + "file-type",
    "language": _EU_NAL + "language",
    "country": _EU_NAL + "country",
    "healthcategories": _HEALTH_NAL + "healthcategories",
    "health-theme": _HEALTH_NAL + "health-theme",
    "coding-system": _HEALTH_NAL + "coding-system",
    "standard": _HEALTH_NAL + "standard",
    "publisher-type": _HEALTH_NAL + "publisher-type",
}

CONTEXT: dict[str, str] = {
    "dcat": str(DCAT),
    "dct": str(DCTERMS),
    "dcatap": str(DCATAP),
    "healthdcatap": str(HEALTHDCATAP),
    "cv": str(CV),
    "vcard": str(VCARD),
    "csvw": str(CSVW),
    "foaf": str(FOAF),
    "geodcatap": str(GEODCATAP),
    "skos": str(SKOS),
    "rdfs": str(RDFS),
    "xsd": str(XSD),
    "eli": str(ELI),
}

_CODE = re.compile(r"^[A-Za-z0-9_.-]+$")


def concept(vocabulary: str, code: str) -> URIRef:
    """The IRI of ``code`` in one of ``VOCABULARIES``."""
    if vocabulary not in VOCABULARIES:
        raise UserError(f"unknown vocabulary {vocabulary!r}; use one of {sorted(VOCABULARIES)}")
    if not _CODE.match(code):
        raise UserError(f"{code!r} is not a {vocabulary} code")
    return URIRef(f"{VOCABULARIES[vocabulary]}/{code}")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Agent(_Frozen):
    """A publisher, HDAB or holder: a ``foaf:Agent`` with exactly one ``cv:ContactPoint``."""

    name: str = Field(min_length=1)
    email: str | None = None
    contact_page: str | None = None
    agent_type: str | None = None  # publisher-type code

    @model_validator(mode="after")
    def _reachable(self) -> Agent:
        if not self.email and not self.contact_page:
            raise UserError(f"agent {self.name!r} needs an email or a contact page")
        return self


class Column(_Frozen):
    """One variable of the dataset (a CSVW column)."""

    name: str = Field(min_length=1)
    title: str = Field(min_length=1)
    datatype: str = Field(min_length=1)
    description: str = Field(min_length=1)
    property_url: str | None = None


class Distribution(_Frozen):
    """How the data is reached: for non-public health data, an access URL behind the permit."""

    key: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_-]+$")
    title: str = Field(min_length=1)
    access_url: str = Field(min_length=1)
    file_type: str | None = None  # file-type code, e.g. CSV, JSON
    description: str | None = None


class DatasetDescription(_Frozen):
    """What a holder says about one dataset; ``dataset_graph`` turns it into HealthDCAT-AP."""

    iri: str = Field(min_length=1)
    identifier: str = Field(min_length=1)
    title: str = Field(min_length=1)
    description: str = Field(min_length=1)
    keywords: tuple[str, ...] = Field(min_length=1)
    publisher: Agent
    hdab: Agent
    custodian: Agent | None = None
    contact_email: str | None = None
    contact_url: str | None = None
    health_categories: tuple[str, ...] = Field(min_length=1)
    health_themes: tuple[str, ...] = ()
    themes: tuple[str, ...] = ("HEAL",)
    dataset_type: str = "STATISTICAL"
    provenance: str = Field(min_length=1)
    distributions: tuple[Distribution, ...] = Field(min_length=1)
    variables: tuple[Column, ...] = ()
    coding_systems: tuple[str, ...] = ()
    standards: tuple[str, ...] = ()
    population_coverage: str | None = None
    number_of_records: int | None = Field(default=None, ge=0)
    number_of_unique_individuals: int | None = Field(default=None, ge=0)
    min_typical_age: int | None = Field(default=None, ge=0)
    max_typical_age: int | None = Field(default=None, ge=0)
    temporal_start: date | None = None
    temporal_end: date | None = None
    spatial: str | None = None  # country code, e.g. LUX
    language: str | None = "ENG"
    landing_page: str | None = None
    issued: date | None = None
    modified: date | None = None
    applicable_legislation: tuple[str, ...] = (EHDS_ELI,)
    trusted_data_holder: bool | None = None  # Art. 72: stated on the publisher
    lang: str = "en"

    @model_validator(mode="after")
    def _rules(self) -> DatasetDescription:
        if not self.contact_email and not self.contact_url:
            raise UserError(f"dataset {self.identifier}: the contact point needs an email or a URL")
        if self.temporal_start and self.temporal_end and self.temporal_end < self.temporal_start:
            raise UserError(f"dataset {self.identifier}: temporal coverage ends before it starts")
        if (
            self.min_typical_age is not None
            and self.max_typical_age is not None
            and self.max_typical_age < self.min_typical_age
        ):
            raise UserError(f"dataset {self.identifier}: maxTypicalAge is below minTypicalAge")
        if not self.applicable_legislation:
            raise UserError(f"dataset {self.identifier}: applicable legislation is mandatory")
        keys = [d.key for d in self.distributions]
        if len(set(keys)) != len(keys):
            raise UserError(f"dataset {self.identifier}: distribution keys must be unique")
        return self

    @property
    def has_structured_data(self) -> bool:
        return bool(self.variables)


def dataset_graph(desc: DatasetDescription, graph: Graph | None = None) -> Graph:
    """Add the HealthDCAT-AP description of ``desc`` to ``graph`` (a new graph by default)."""
    g = graph if graph is not None else _new_graph()
    ds = URIRef(desc.iri)
    lang = desc.lang
    g.add((ds, RDF.type, DCAT.Dataset))
    g.add((ds, DCTERMS.title, Literal(desc.title, lang=lang)))
    g.add((ds, DCTERMS.description, Literal(desc.description, lang=lang)))
    g.add((ds, DCTERMS.identifier, Literal(desc.identifier)))
    g.add((ds, DCTERMS.accessRights, _concept(g, "access-right", "NON_PUBLIC")))
    for legislation in desc.applicable_legislation:
        g.add((ds, DCATAP.applicableLegislation, _legislation(g, legislation)))
    for theme in desc.themes:
        g.add((ds, DCAT.theme, _concept(g, "data-theme", theme)))
    g.add((ds, DCTERMS.type, _concept(g, "dataset-type", desc.dataset_type)))
    for keyword in desc.keywords:
        g.add((ds, DCAT.keyword, Literal(keyword, lang=lang)))
    provenance = URIRef(desc.iri + "#provenance")
    g.add((provenance, RDF.type, DCTERMS.ProvenanceStatement))
    g.add((provenance, RDFS.label, Literal(desc.provenance, lang=lang)))
    g.add((ds, DCTERMS.provenance, provenance))
    g.add((ds, DCAT.contactPoint, _kind(g, desc)))
    publisher = _agent(g, desc.publisher, URIRef(desc.iri + "#publisher"))
    g.add((ds, DCTERMS.publisher, publisher))
    if desc.trusted_data_holder is not None:
        g.add((publisher, HEALTHDCATAP.trustedDataHolder, Literal(desc.trusted_data_holder)))
    g.add((ds, HEALTHDCATAP.hdab, _agent(g, desc.hdab, URIRef(desc.iri + "#hdab"))))
    if desc.custodian is not None:
        g.add((ds, GEODCATAP.custodian, _agent(g, desc.custodian, URIRef(desc.iri + "#custodian"))))
    for code in desc.health_categories:
        g.add((ds, HEALTHDCATAP.healthCategory, _concept(g, "healthcategories", code)))
    for code in desc.health_themes:
        g.add((ds, HEALTHDCATAP.healthTheme, _concept(g, "health-theme", code)))
    for code in desc.coding_systems:
        g.add((ds, HEALTHDCATAP.hasCodingSystem, _standard(g, "coding-system", code)))
    for code in desc.standards:
        g.add((ds, DCTERMS.conformsTo, _standard(g, "standard", code)))
    g.add((ds, HEALTHDCATAP.hasStructuredData, Literal(desc.has_structured_data)))
    if desc.variables:
        g.add((ds, HEALTHDCATAP.hasVariables, _variables(g, desc)))
    for distribution in desc.distributions:
        g.add((ds, DCAT.distribution, _distribution(g, desc, distribution)))
    _optional(g, ds, desc)
    return g


def catalogue_graph(
    datasets: Iterable[DatasetDescription],
    *,
    iri: str,
    title: str,
    description: str,
    publisher: Agent,
    lang: str = "en",
) -> Graph:
    """A national catalogue: a ``dcat:Catalog`` listing every dataset, with each dataset's description."""
    g = _new_graph()
    cat = URIRef(iri)
    g.add((cat, RDF.type, DCAT.Catalog))
    g.add((cat, DCTERMS.title, Literal(title, lang=lang)))
    g.add((cat, DCTERMS.description, Literal(description, lang=lang)))
    g.add((cat, DCATAP.applicableLegislation, _legislation(g, EHDS_ELI)))
    g.add((cat, DCTERMS.publisher, _agent(g, publisher, URIRef(iri + "#publisher"))))
    seen: set[str] = set()
    for desc in datasets:
        if desc.iri in seen:
            raise UserError(f"dataset {desc.iri} appears twice in the catalogue")
        seen.add(desc.iri)
        g.add((cat, DCAT.dataset, URIRef(desc.iri)))
        dataset_graph(desc, g)
    return g


def to_jsonld(graph: Graph) -> dict[str, Any]:
    """Compact JSON-LD with the context inline (never a URL to fetch)."""
    text = graph.serialize(format="json-ld", context=CONTEXT, auto_compact=True)
    document = json.loads(text)
    if isinstance(document, list):  # rdflib may emit a bare node list; keep the context inline anyway
        return {"@context": CONTEXT, "@graph": document}
    return dict(document)


def to_turtle(graph: Graph) -> str:
    return graph.serialize(format="turtle")


def from_jsonld(document: Mapping[str, Any]) -> Graph:
    """Read a JSON-LD description; a context given by URL is refused rather than fetched."""
    if _remote_context(document.get("@context")):
        raise UserError("JSON-LD documents must carry their context inline; remote contexts are not fetched")
    return Graph().parse(data=json.dumps(document), format="json-ld")


def _remote_context(context: Any) -> bool:
    if isinstance(context, str):
        return True
    if isinstance(context, list):
        return any(_remote_context(c) for c in context)
    return False


def _new_graph() -> Graph:
    g = Graph()
    for prefix, ns in CONTEXT.items():
        g.bind(prefix, Namespace(ns))
    return g


def _concept(g: Graph, vocabulary: str, code: str) -> URIRef:
    iri = concept(vocabulary, code)
    g.add((iri, RDF.type, SKOS.Concept))
    g.add((iri, SKOS.inScheme, URIRef(VOCABULARIES[vocabulary])))
    g.add((iri, SKOS.prefLabel, Literal(code, lang="en")))
    return iri


def _standard(g: Graph, vocabulary: str, code: str) -> URIRef:
    iri = _concept(g, vocabulary, code)
    g.add((iri, RDF.type, DCTERMS.Standard))
    return iri


def _legislation(g: Graph, iri: str) -> URIRef:
    ref = URIRef(iri)
    g.add((ref, RDF.type, ELI.LegalResource))
    return ref


def _agent(g: Graph, agent: Agent, node: URIRef) -> URIRef:
    g.add((node, RDF.type, FOAF.Agent))
    g.add((node, FOAF.name, Literal(agent.name)))
    if agent.agent_type:
        g.add((node, DCTERMS.type, _concept(g, "publisher-type", agent.agent_type)))
    contact = URIRef(str(node) + "-contact")
    g.add((contact, RDF.type, CV.ContactPoint))
    if agent.email:
        g.add((contact, CV.email, Literal(agent.email)))
    if agent.contact_page:
        g.add((contact, CV.contactPage, URIRef(agent.contact_page)))
    g.add((node, CV.contactPoint, contact))
    return node


def _kind(g: Graph, desc: DatasetDescription) -> URIRef:
    node = URIRef(desc.iri + "#contact")
    g.add((node, RDF.type, VCARD.Kind))
    if desc.contact_email:
        g.add((node, VCARD.hasEmail, URIRef("mailto:" + desc.contact_email.removeprefix("mailto:"))))
    if desc.contact_url:
        g.add((node, VCARD.hasURL, URIRef(desc.contact_url)))
    return node


def _variables(g: Graph, desc: DatasetDescription) -> URIRef:
    group = URIRef(desc.iri + "#variables")
    table = URIRef(desc.iri + "#variables-table")
    g.add((group, RDF.type, CSVW.TableGroup))
    g.add((group, DCTERMS.title, Literal(f"Variables of {desc.title}", lang=desc.lang)))
    g.add((group, CSVW.table, table))
    g.add((table, RDF.type, CSVW.Table))
    g.add((table, DCTERMS.title, Literal(f"Variables of {desc.title}", lang=desc.lang)))
    for column in desc.variables:
        node = URIRef(f"{desc.iri}#variable-{column.name}")
        g.add((node, RDF.type, CSVW.Column))
        g.add((node, CSVW.name, Literal(column.name)))
        g.add((node, CSVW.title, Literal(column.title, lang=desc.lang)))
        g.add((node, CSVW.datatype, Literal(column.datatype)))
        g.add((node, DCTERMS.description, Literal(column.description, lang=desc.lang)))
        if column.property_url:
            g.add((node, CSVW.propertyUrl, URIRef(column.property_url)))
        # csvw:column is a repeated property, not an rdf:List (the shapes count its values)
        g.add((table, CSVW.column, node))
    return group


def _distribution(g: Graph, desc: DatasetDescription, dist: Distribution) -> URIRef:
    node = URIRef(f"{desc.iri}#distribution-{dist.key}")
    g.add((node, RDF.type, DCAT.Distribution))
    g.add((node, DCTERMS.title, Literal(dist.title, lang=desc.lang)))
    if dist.description:
        g.add((node, DCTERMS.description, Literal(dist.description, lang=desc.lang)))
    for legislation in desc.applicable_legislation:
        g.add((node, DCATAP.applicableLegislation, _legislation(g, legislation)))
    g.add((node, DCAT.accessURL, URIRef(dist.access_url)))
    if dist.file_type:
        g.add((node, DCTERMS.format, _concept(g, "file-type", dist.file_type)))
    return node


def _optional(g: Graph, ds: URIRef, desc: DatasetDescription) -> None:
    counts = (
        (HEALTHDCATAP.numberOfRecords, desc.number_of_records),
        (HEALTHDCATAP.numberOfUniqueIndividuals, desc.number_of_unique_individuals),
        (HEALTHDCATAP.minTypicalAge, desc.min_typical_age),
        (HEALTHDCATAP.maxTypicalAge, desc.max_typical_age),
    )
    for prop, value in counts:
        if value is not None:
            g.add((ds, prop, Literal(value, datatype=XSD.nonNegativeInteger)))
    if desc.population_coverage:
        g.add((ds, HEALTHDCATAP.populationCoverage, Literal(desc.population_coverage, lang=desc.lang)))
    if desc.temporal_start or desc.temporal_end:
        period = URIRef(desc.iri + "#temporal")
        g.add((period, RDF.type, DCTERMS.PeriodOfTime))
        if desc.temporal_start:
            g.add((period, DCAT.startDate, Literal(desc.temporal_start, datatype=XSD.date)))
        if desc.temporal_end:
            g.add((period, DCAT.endDate, Literal(desc.temporal_end, datatype=XSD.date)))
        g.add((ds, DCTERMS.temporal, period))
    if desc.spatial:
        g.add((ds, DCTERMS.spatial, _concept(g, "country", desc.spatial)))
    if desc.language:
        g.add((ds, DCTERMS.language, _concept(g, "language", desc.language)))
    if desc.landing_page:
        g.add((ds, DCAT.landingPage, URIRef(desc.landing_page)))
    if desc.issued:
        g.add((ds, DCTERMS.issued, Literal(desc.issued, datatype=XSD.date)))
    if desc.modified:
        g.add((ds, DCTERMS.modified, Literal(desc.modified, datatype=XSD.date)))
