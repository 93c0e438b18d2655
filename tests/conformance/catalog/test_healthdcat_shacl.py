"""Generated HealthDCAT-AP descriptions and a national catalogue validate against the shared R8 shapes.

The shapes are loaded from the shared reference data with the first documented fix applied in memory
(ehds.md 12.3): the property shape without ``sh:path`` that carries the "hasStructuredData true needs
hasVariables" ``sh:or`` moves to the Dataset node shape. The second fix (NAL IRIs typed ``skos:Concept``)
is what ``d4h.catalog`` states in its own output. The shape files are never copied or edited.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pyshacl import validate
from pyshacl.errors import ReportableRuntimeError
from rdflib import Graph, URIRef
from rdflib.namespace import RDF, SH, SKOS

from d4h.catalog import catalogue_graph, dataset_graph
from d4h.catalog.healthdcat import HEALTHDCATAP
from tests.unit.catalog.catalog_factories import HDAB_AGENT, description

SHAPE_FILES = ("shapes/non-public-shapes.ttl", "ranges/range.ttl", "shapes/graph-guard.ttl")


def _release8(shared: Path) -> Path:
    return shared / "data" / "health" / "healthdcat-ap" / "release-8"


@pytest.fixture(scope="module")
def shapes(shared: Path) -> Graph:
    graph = Graph()
    for name in SHAPE_FILES:
        graph.parse(_release8(shared) / "validator" / name, format="turtle")
    moved = _lift_pathless_property_shapes(graph)
    assert moved == 1, "expected exactly one path-less property shape (the hasVariables sh:or)"
    return graph


def _lift_pathless_property_shapes(graph: Graph) -> int:
    """Fix 1: a property shape without sh:path becomes constraints of the node shape that holds it."""
    moved = 0
    for node_shape, prop in list(graph.subject_objects(SH.property)):
        if (prop, SH.path, None) in graph:
            continue
        for predicate, value in list(graph.predicate_objects(prop)):
            graph.add((node_shape, predicate, value))
        graph.remove((node_shape, SH.property, prop))
        graph.remove((prop, None, None))
        moved += 1
    return moved


def _report(data: Graph, shapes: Graph) -> tuple[bool, str]:
    conforms, _, text = validate(data, shacl_graph=shapes)
    return bool(conforms), str(text)


def test_official_example_conforms_when_fix_is_applied(shared: Path, shapes: Graph) -> None:
    example = Graph().parse(
        _release8(shared) / "examples" / "example-healthdcat-dataset.ttl", format="turtle"
    )
    # Fix 2 as background data: the example does not type its health NAL IRIs as skos:Concept.
    for predicate in (HEALTHDCATAP.healthCategory, HEALTHDCATAP.healthTheme):
        for iri in set(example.objects(None, predicate)):
            example.add((iri, RDF.type, SKOS.Concept))
    conforms, text = _report(example, shapes)
    assert conforms, text


def test_unfixed_shapes_are_rejected_when_loaded_as_published(shared: Path) -> None:
    graph = Graph()
    for name in SHAPE_FILES:
        graph.parse(_release8(shared) / "validator" / name, format="turtle")
    with pytest.raises(ReportableRuntimeError, match="not a well-formed SHACL PropertyShape"):
        validate(dataset_graph(description()), shacl_graph=graph)


def test_generated_dataset_conforms_when_validated(shapes: Graph) -> None:
    conforms, text = _report(dataset_graph(description()), shapes)
    assert conforms, text


def test_unstructured_dataset_conforms_when_it_has_no_variables(shapes: Graph) -> None:
    conforms, text = _report(dataset_graph(description(variables=())), shapes)
    assert conforms, text


def test_national_catalogue_of_several_datasets_conforms_when_validated(shapes: Graph) -> None:
    datasets = [
        description("diabetes-a", trusted_data_holder=True),
        description(
            "oncology-b",
            iri="https://hospital-b.example/datasets/oncology-b",
            title="Breast cancer toxicity",
            health_themes=("CANCER",),
            coding_systems=("ICD-10",),
            custodian=None,
        ),
        description("registry", iri="https://registry.example/datasets/registry", variables=(), standards=()),
    ]
    graph = catalogue_graph(
        datasets,
        iri="https://hdab.example.lu/catalogue",
        title="Luxembourg national health data catalogue",
        description="Datasets of every data holder in the national data space",
        publisher=HDAB_AGENT,
    )
    conforms, text = _report(graph, shapes)
    assert conforms, text


def test_missing_hdab_and_health_category_are_violations_when_removed(shapes: Graph) -> None:
    desc = description()
    graph = dataset_graph(desc)
    dataset = URIRef(desc.iri)
    graph.remove((dataset, HEALTHDCATAP.hdab, None))
    graph.remove((dataset, HEALTHDCATAP.healthCategory, None))
    conforms, text = _report(graph, shapes)
    assert not conforms
    assert "exactly one healthdcatap:hdab" in text
    assert "at least one healthdcatap:healthCategory" in text


def test_structured_dataset_without_variables_is_a_violation_when_fix_is_applied(shapes: Graph) -> None:
    desc = description()
    graph = dataset_graph(desc)
    graph.remove((URIRef(desc.iri), HEALTHDCATAP.hasVariables, None))
    conforms, text = _report(graph, shapes)
    assert not conforms
    assert "must include at least one healthdcatap:hasVariables" in text


def test_graph_without_dataset_is_rejected_when_only_a_catalogue_is_sent(shapes: Graph) -> None:
    graph = catalogue_graph(
        [], iri="https://hdab.example.lu/catalogue", title="Empty", description="none", publisher=HDAB_AGENT
    )
    conforms, text = _report(graph, shapes)
    assert not conforms
    assert "at least one dcat:Dataset" in text
