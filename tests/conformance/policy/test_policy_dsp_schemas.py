"""ODRL bodies the policy package emits validate against the official DSP 2025-1 schemas (local, no network).

Also: every policy inside the official DSP examples parses and serialises back to the same JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft201909Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT201909

from d4h.policy import (
    Constraint,
    Duty,
    LogicalConstraint,
    LogicalOperator,
    Operator,
    Permission,
    Policy,
    PolicyType,
    health_offer,
    parse_policy,
    to_jsonld,
)

BASE = "https://w3id.org/dspace/2025/1/"
CONTEXT = ["https://w3id.org/dspace/2025/1/context.jsonld"]


@pytest.fixture(scope="module")
def dsp(shared: Path) -> Path:
    return shared / "data" / "conformance" / "dsp-2025-1"


@pytest.fixture(scope="module")
def registry(dsp: Path) -> Registry[Any]:
    resources = []
    for path in sorted(dsp.glob("*/*-schema.json")):
        # Upstream typo (see shared/data/SOURCES.md): "#definitions/" must be "#/definitions/".
        schema = json.loads(path.read_text().replace("#definitions/", "#/definitions/"))
        resources.append((schema["$id"], Resource.from_contents(schema, default_specification=DRAFT201909)))
    return Registry().with_resources(resources)


def _errors(registry: Registry[Any], ref: str, instance: Any) -> list[str]:
    validator = Draft201909Validator({"$ref": BASE + ref}, registry=registry)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(instance)]


def _offers() -> list[Policy]:
    every_operator = Permission(
        constraints=(
            *(Constraint("dateTime", op, "2027-01-01T00:00:00Z") for op in Operator),
            Constraint("elapsedTime", Operator.LTEQ, 90),
            Constraint("elapsedTime", Operator.LTEQ, 2.5),
            Constraint("membership", Operator.EQ, True),
            LogicalConstraint(
                LogicalOperator.OR,
                (
                    LogicalConstraint(LogicalOperator.XONE, (Constraint("spatial", Operator.IS_A, "EU"),)),
                    LogicalConstraint(
                        LogicalOperator.AND_SEQUENCE, (Constraint("purpose", Operator.EQ, "art53-1-e"),)
                    ),
                    LogicalConstraint(
                        LogicalOperator.AND, (Constraint("purpose", Operator.EQ, "art53-1-f"),)
                    ),
                ),
            ),
        ),
        duties=(Duty("inform", (Constraint("elapsedTime", Operator.GT, "P540D"),), uid="urn:duty:publish"),),
    )
    return [
        health_offer("urn:offer:health-1"),
        health_offer(
            "urn:offer:health-2",
            purposes=("art53-1-a", "art53-1-c", "art53-1-e"),
            processing_modes=("aggregate-only", "pseudonymised-spe"),
            roles=("data_user", "public_sector_body"),
            require_permit=False,
            region="EU",
            valid_until="2030-12-31T23:59:59Z",
        ),
        Policy("urn:offer:every-operator", permissions=(every_operator,), obligations=(Duty("attribute"),)),
    ]


@pytest.mark.parametrize("offer", _offers(), ids=lambda p: p.uid)
def test_catalog_offer_validates_when_emitted_without_target(registry: Registry[Any], offer: Policy) -> None:
    body = to_jsonld(offer)
    assert "target" not in body
    assert _errors(registry, "negotiation/contract-schema.json#/definitions/Offer", body) == []


@pytest.mark.parametrize("offer", _offers(), ids=lambda p: p.uid)
def test_offer_validates_inside_a_dataset_when_published_in_the_catalog(
    registry: Registry[Any], dsp: Path, offer: Policy
) -> None:
    dataset = json.loads((dsp / "catalog" / "example" / "dataset.json").read_text())
    dataset["hasPolicy"] = [to_jsonld(offer)]
    assert _errors(registry, "catalog/dataset-schema.json", dataset) == []


@pytest.mark.parametrize("offer", _offers(), ids=lambda p: p.uid)
def test_message_offer_validates_when_sent_in_a_contract_request(
    registry: Registry[Any], offer: Policy
) -> None:
    message = {
        "@context": CONTEXT,
        "@type": "ContractRequestMessage",
        "consumerPid": "urn:uuid:c1",
        "callbackAddress": "https://consumer.example/callback",
        "offer": {**to_jsonld(offer), "target": "urn:dataset:1"},
    }
    assert _errors(registry, "negotiation/contract-request-message-schema.json", message) == []


@pytest.mark.parametrize("offer", _offers(), ids=lambda p: p.uid)
def test_agreement_validates_when_sent_in_a_contract_agreement_message(
    registry: Registry[Any], offer: Policy
) -> None:
    agreement = Policy(
        "urn:agreement:1",
        type=PolicyType.AGREEMENT,
        permissions=offer.permissions,
        prohibitions=offer.prohibitions,
        obligations=offer.obligations,
        target="urn:dataset:1",
        assigner="did:web:holder.example",
        assignee="did:web:user.example",
        timestamp="2026-11-28T12:00:00Z",
        profile=offer.profile,
    )
    message = {
        "@context": CONTEXT,
        "@type": "ContractAgreementMessage",
        "providerPid": "urn:uuid:p1",
        "consumerPid": "urn:uuid:c1",
        "agreement": to_jsonld(agreement),
    }
    assert _errors(registry, "negotiation/contract-agreement-message-schema.json", message) == []


def test_schema_check_rejects_a_catalog_offer_when_it_carries_a_target(registry: Registry[Any]) -> None:
    body = {**to_jsonld(health_offer("urn:offer:1")), "target": "urn:dataset:1"}
    assert _errors(registry, "negotiation/contract-schema.json#/definitions/Offer", body) != []


def _example_policies(dsp: Path) -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(dsp.glob("*/example/*.json")):
        doc = json.loads(path.read_text())
        for key in ("offer", "agreement"):
            if isinstance(doc.get(key), dict):
                found.append((f"{path.name}:{key}", doc[key]))
        for dataset in [doc, *doc.get("dataset", [])]:
            for i, offer in enumerate(dataset.get("hasPolicy", []) if isinstance(dataset, dict) else []):
                found.append((f"{path.name}:hasPolicy[{i}]", offer))
    return found


def test_every_policy_in_the_official_examples_round_trips_when_parsed_and_serialised(dsp: Path) -> None:
    examples = _example_policies(dsp)
    assert len(examples) >= 6
    for name, body in examples:
        policy = parse_policy(body, strict=False)
        assert to_jsonld(policy) == body, name
