"""HealthDCAT-AP descriptions: mandatory properties, vocabulary concepts, JSON-LD and Turtle round trips."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from rdflib import Graph, Literal, URIRef
from rdflib.compare import isomorphic
from rdflib.namespace import DCAT, DCTERMS, RDF, SKOS, XSD

from d4h.catalog import (
    CONTEXT,
    EHDS_ELI,
    NON_PUBLIC,
    Agent,
    catalogue_graph,
    concept,
    dataset_graph,
    from_jsonld,
    to_jsonld,
    to_turtle,
)
from d4h.catalog.healthdcat import CSVW, CV, DCATAP, HEALTHDCATAP
from d4h.errors import UserError
from tests.unit.catalog.catalog_factories import HDAB_AGENT, description

DS = URIRef("https://hospital-a.example/datasets/diabetes-a")


def _one(g: Graph, predicate: URIRef) -> Any:
    values = list(g.objects(DS, predicate))
    assert len(values) == 1, (predicate, values)
    return values[0]


def test_graph_states_every_mandatory_property_when_built() -> None:
    g = dataset_graph(description())
    assert (DS, RDF.type, DCAT.Dataset) in g
    for predicate in (
        DCTERMS.title,
        DCTERMS.description,
        DCTERMS.identifier,
        DCAT.distribution,
        DCAT.theme,
        HEALTHDCATAP.healthCategory,
        DCAT.contactPoint,
        DCAT.keyword,
        DCTERMS.type,
        DCTERMS.provenance,
    ):
        assert list(g.objects(DS, predicate)), predicate
    assert _one(g, DCTERMS.accessRights) == URIRef(NON_PUBLIC)
    assert _one(g, DCATAP.applicableLegislation) == URIRef(EHDS_ELI)
    assert _one(g, HEALTHDCATAP.hasStructuredData) == Literal(True)
    hdab = _one(g, HEALTHDCATAP.hdab)
    assert len(list(g.objects(hdab, CV.contactPoint))) == 1
    for dist in g.objects(DS, DCAT.distribution):
        assert (dist, DCATAP.applicableLegislation, URIRef(EHDS_ELI)) in g
        assert list(g.objects(dist, DCAT.accessURL))


def test_graph_states_health_properties_when_description_has_them() -> None:
    g = dataset_graph(description())
    assert _one(g, HEALTHDCATAP.numberOfUniqueIndividuals) == Literal(4200, datatype=XSD.nonNegativeInteger)
    assert _one(g, HEALTHDCATAP.healthTheme) == concept("health-theme", "DIABETES")
    assert set(g.objects(DS, HEALTHDCATAP.hasCodingSystem)) == {
        concept("coding-system", "SNOMED-CT"),
        concept("coding-system", "LOINC"),
    }
    period = _one(g, DCTERMS.temporal)
    assert (period, DCAT.startDate, Literal(date(2015, 1, 1), datatype=XSD.date)) in g


def test_variables_are_csvw_columns_when_dataset_is_structured() -> None:
    g = dataset_graph(description())
    group = _one(g, HEALTHDCATAP.hasVariables)
    (table,) = g.objects(group, CSVW.table)
    columns = set(g.objects(table, CSVW.column))
    assert len(columns) == 2  # a repeated property, not an rdf:List
    names = {str(g.value(c, CSVW.name)) for c in columns}
    assert names == {"person_id", "hba1c"}


def test_trusted_data_holder_flag_is_on_publisher_when_stated() -> None:
    g = dataset_graph(description(trusted_data_holder=True))
    publisher = _one(g, DCTERMS.publisher)
    assert (publisher, HEALTHDCATAP.trustedDataHolder, Literal(True)) in g
    assert not list(dataset_graph(description()).objects(None, HEALTHDCATAP.trustedDataHolder))


def test_structured_flag_is_false_without_variables_when_none_are_described() -> None:
    g = dataset_graph(description(variables=()))
    assert _one(g, HEALTHDCATAP.hasStructuredData) == Literal(False)
    assert not list(g.objects(DS, HEALTHDCATAP.hasVariables))


def test_vocabulary_iris_are_skos_concepts_when_stated() -> None:
    g = dataset_graph(description())
    for iri in (URIRef(NON_PUBLIC), concept("data-theme", "HEAL"), concept("healthcategories", "EHRS")):
        assert (iri, RDF.type, SKOS.Concept) in g
        assert list(g.objects(iri, SKOS.inScheme))
        assert list(g.objects(iri, SKOS.prefLabel))
    assert (concept("coding-system", "LOINC"), RDF.type, DCTERMS.Standard) in g


def test_jsonld_carries_inline_context_and_round_trips_when_serialised() -> None:
    g = dataset_graph(description())
    document = to_jsonld(g)
    assert document["@context"] == CONTEXT
    assert isomorphic(from_jsonld(document), g)


def test_turtle_round_trips_when_serialised() -> None:
    g = dataset_graph(description())
    assert isomorphic(Graph().parse(data=to_turtle(g), format="turtle"), g)


def test_remote_context_is_refused_when_reading_jsonld() -> None:
    with pytest.raises(UserError, match="inline"):
        from_jsonld({"@context": "https://example.org/context.jsonld", "@id": "x"})


def test_same_description_gives_same_graph_when_built_twice() -> None:
    g = dataset_graph(description())
    merged = dataset_graph(description(), dataset_graph(description()))
    assert len(merged) == len(g)


def test_catalogue_lists_each_dataset_when_merged() -> None:
    descriptions = [description("diabetes-a"), description("oncology-a", title="Oncology")]
    g = catalogue_graph(
        descriptions,
        iri="https://hdab.example/catalogue",
        title="National",
        description="All",
        publisher=HDAB_AGENT,
    )
    cat = URIRef("https://hdab.example/catalogue")
    assert (cat, RDF.type, DCAT.Catalog) in g
    assert set(g.objects(cat, DCAT.dataset)) == {URIRef(d.iri) for d in descriptions}
    assert (cat, DCATAP.applicableLegislation, URIRef(EHDS_ELI)) in g


def test_catalogue_is_refused_when_a_dataset_appears_twice() -> None:
    with pytest.raises(UserError, match="twice"):
        catalogue_graph(
            [description(), description()],
            iri="https://h/c",
            title="t",
            description="d",
            publisher=HDAB_AGENT,
        )


def test_agent_is_refused_when_it_cannot_be_contacted() -> None:
    with pytest.raises(UserError, match="email or a contact page"):
        Agent(name="Nobody")


def test_description_is_refused_when_temporal_coverage_is_reversed() -> None:
    with pytest.raises(UserError, match="ends before"):
        description(temporal_start=date(2024, 1, 1), temporal_end=date(2020, 1, 1))


def test_description_is_refused_when_contact_point_is_missing() -> None:
    with pytest.raises(UserError, match="contact point"):
        description(contact_email=None, contact_url=None)


def test_concept_is_refused_when_vocabulary_is_unknown() -> None:
    with pytest.raises(UserError, match="unknown vocabulary"):
        concept("colours", "RED")
    with pytest.raises(UserError, match="not a healthcategories code"):
        concept("healthcategories", "EHRS/../x")
