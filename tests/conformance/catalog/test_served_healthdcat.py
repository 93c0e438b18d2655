"""Each dataset a node publishes is served as HealthDCAT-AP (JSON-LD and Turtle) that passes the shapes."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyshacl import validate
from rdflib import Graph

from tests.apps import RunningApp
from tests.conformance.catalog.test_healthdcat_shacl import (
    SHAPE_FILES,
    _lift_pathless_property_shapes,
    _release8,
)


@pytest.fixture(scope="module")
def shapes(shared: Path) -> Graph:
    graph = Graph()
    for name in SHAPE_FILES:
        graph.parse(_release8(shared) / "validator" / name, format="turtle")
    _lift_pathless_property_shapes(graph)
    return graph


def _publish(app: RunningApp, metadata: dict[str, object]) -> None:
    resp = app.client.post(
        "/api/v1/datasets",
        headers=app.admin(),
        json={
            "id": "t2d",
            "title": "Type 2 diabetes cohort",
            "description": "OMOP extract",
            "metadata": metadata,
        },
    )
    assert resp.status_code == 201, resp.text


def test_minimal_dataset_is_served_as_valid_healthdcat_turtle(node_app: RunningApp, shapes: Graph) -> None:
    _publish(node_app, {})
    ttl = node_app.client.get("/catalog/healthdcat/t2d.ttl")
    assert ttl.status_code == 200
    assert ttl.headers["content-type"].startswith("text/turtle")
    conforms, _, text = validate(Graph().parse(data=ttl.text, format="turtle"), shacl_graph=shapes)
    assert conforms, text


def test_rich_dataset_is_served_as_valid_healthdcat_jsonld(node_app: RunningApp, shapes: Graph) -> None:
    _publish(
        node_app,
        {
            "healthdcat": {
                "keywords": ["diabetes", "HbA1c"],
                "health_categories": ["EHRS"],
                "health_themes": ["DIABETES"],
                "coding_systems": ["SNOMED-CT", "LOINC"],
                "number_of_unique_individuals": 4200,
                "population_coverage": "Adults with type 2 diabetes",
            }
        },
    )
    doc = node_app.client.get("/catalog/healthdcat/t2d.jsonld")
    assert doc.status_code == 200
    graph = Graph().parse(data=doc.text, format="json-ld")
    conforms, _, text = validate(graph, shacl_graph=shapes)
    assert conforms, text


def test_unknown_dataset_description_is_404(node_app: RunningApp) -> None:
    assert node_app.client.get("/catalog/healthdcat/nope.ttl").status_code == 404


def test_policy_vocabulary_is_published(node_app: RunningApp) -> None:
    vocab = node_app.client.get("/api/v1/policy/vocabulary").json()
    text = str(vocab)
    for operand in ("purpose", "participantRole", "dataPermit", "processingMode", "spatial"):
        assert operand in text
