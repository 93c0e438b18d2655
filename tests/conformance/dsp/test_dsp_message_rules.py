"""The wire rules the models enforce beyond field types: contexts, targets, initial vs counter, empty arrays."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from d4h.dsp import messages as m
from d4h.dsp.version import dsp_base_url, version_response
from d4h.errors import ConfigError, UserError

Validate = Callable[[Any, str], list[str]]
CTX = [m.DSP_CONTEXT]
OFFER = {"@id": "urn:offer:1", "@type": "Offer", "permission": [{"action": "use"}]}
PIDS = {"providerPid": "urn:p", "consumerPid": "urn:c"}


def _request(**extra: Any) -> dict[str, Any]:
    return {"@context": CTX, "@type": "ContractRequestMessage", "consumerPid": "urn:c", **extra}


def test_message_without_context_is_refused_when_received() -> None:
    with pytest.raises(UserError, match="@context"):
        m.parse_message({"@type": "TransferCompletionMessage", **PIDS})


@pytest.mark.parametrize("context", [["https://example.org/other.jsonld"], m.DSP_CONTEXT, []])
def test_context_without_the_dsp_url_in_an_array_is_refused_when_received(context: Any) -> None:
    with pytest.raises(UserError, match="@context"):
        m.parse_message({"@context": context, "@type": "TransferCompletionMessage", **PIDS})


def test_extra_contexts_are_accepted_but_never_emitted_when_round_tripped() -> None:
    wire = {"@context": [m.DSP_CONTEXT, m.ODRL_PROFILE_CONTEXT], "@type": "TransferCompletionMessage", **PIDS}
    assert m.parse_message(wire).to_wire()["@context"] == CTX


def test_python_construction_needs_no_context_when_built_in_code() -> None:
    assert m.TransferCompletionMessage(**PIDS).to_wire()["@context"] == CTX


def test_initial_request_and_counter_request_are_told_apart_when_parsed() -> None:
    target_offer = {**OFFER, "target": "urn:ds:1"}
    initial = m.ContractRequestMessage.from_wire(_request(offer=target_offer, callbackAddress="https://c"))
    counter = m.ContractRequestMessage.from_wire(_request(offer=target_offer, providerPid="urn:p"))
    assert initial.is_initial
    assert not counter.is_initial


@pytest.mark.parametrize(
    "extra",
    [
        {"providerPid": "urn:p", "callbackAddress": "https://c"},  # schema oneOf: not both
        {},  # neither
    ],
)
def test_request_with_both_or_neither_of_callback_and_provider_pid_is_refused_when_received(
    extra: dict[str, Any],
) -> None:
    with pytest.raises(UserError, match="exactly one"):
        m.ContractRequestMessage.from_wire(_request(offer={**OFFER, "target": "urn:ds:1"}, **extra))


def test_offer_without_target_is_refused_when_inside_a_negotiation_message() -> None:
    with pytest.raises(UserError, match="target"):
        m.ContractRequestMessage.from_wire(_request(offer=OFFER, callbackAddress="https://c"))
    with pytest.raises(ValidationError, match="target"):  # built in code: a caller bug, not a user error
        m.ContractOfferMessage(providerPid="urn:p", consumerPid="urn:c", offer=m.Offer.from_wire(OFFER))


def test_catalogue_offer_with_target_is_refused_when_inside_a_dataset() -> None:
    dataset = {
        "@context": CTX,
        "@id": "urn:ds:1",
        "@type": "Dataset",
        "hasPolicy": [{**OFFER, "target": "urn:ds:1"}],
        "distribution": [{"format": "HttpData-PULL", "accessService": "urn:svc"}],
    }
    with pytest.raises(UserError, match="must not carry a target"):
        m.Dataset.from_wire(dataset)


def test_rule_with_target_is_refused_when_received() -> None:
    offer = {**OFFER, "target": "urn:ds:1", "permission": [{"action": "use", "target": "urn:ds:1"}]}
    with pytest.raises(UserError, match="no target"):
        m.ContractRequestMessage.from_wire(_request(offer=offer, callbackAddress="https://c"))


def test_policy_without_permission_or_prohibition_is_refused_when_received() -> None:
    with pytest.raises(UserError, match="permission or prohibition"):
        m.Offer.from_wire({"@id": "urn:o", "obligation": [{"action": "compensate"}]})


def test_logical_constraint_with_two_operators_is_refused_when_received() -> None:
    both = {"and": [], "or": []}
    with pytest.raises(UserError, match="exactly one"):
        m.Permission.from_wire({"action": "use", "constraint": [both]})


def test_unknown_operator_is_refused_when_received() -> None:
    constraint = {"leftOperand": "purpose", "operator": "approximately", "rightOperand": "x"}
    with pytest.raises(UserError, match="operator"):
        m.Permission.from_wire({"action": "use", "constraint": [constraint]})


def test_dataset_without_offer_is_refused_when_received() -> None:
    dataset = {
        "@context": CTX,
        "@id": "urn:ds:1",
        "hasPolicy": [],
        "distribution": [{"format": "f", "accessService": "s"}],
    }
    with pytest.raises(UserError, match="hasPolicy"):
        m.Dataset.from_wire(dataset)


def test_catalogue_with_policy_or_without_participant_is_refused_when_root() -> None:
    with pytest.raises(UserError, match="hasPolicy"):
        m.Catalog.from_wire({"@context": CTX, "@id": "c", "participantId": "p", "hasPolicy": [OFFER]})
    with pytest.raises(UserError, match="participantId"):
        m.Catalog.from_wire({"@context": CTX, "@id": "c"})
    with pytest.raises(UserError, match="participantId"):
        m.Catalog(id="c").to_wire()


def test_empty_catalogue_omits_the_dataset_array_when_serialised(validate: Validate) -> None:
    empty = m.Catalog(id="urn:cat", participantId="did:web:h", dataset=())
    wire = empty.to_wire()
    assert "dataset" not in wire
    assert validate(wire, "catalog/catalog-schema.json") == []


def test_open_vocabulary_terms_survive_a_round_trip_when_received() -> None:
    dataset = {
        "@context": CTX,
        "@id": "urn:ds:1",
        "@type": "Dataset",
        "title": "Diabetes cohort",
        "keyword": ["diabetes", "omop"],
        "hasPolicy": [{**OFFER, "assigner": "did:web:h"}],
        "distribution": [{"@type": "Distribution", "format": "HttpData-PULL", "accessService": "urn:svc"}],
    }
    assert m.Dataset.from_wire(dataset).to_wire() == dataset


def test_unknown_terms_are_dropped_from_protocol_messages_when_received() -> None:
    wire = {"@context": CTX, "@type": "TransferCompletionMessage", **PIDS, "x-debug": 1}
    assert "x-debug" not in m.parse_message(wire).to_wire()


def test_parse_message_refuses_unknown_or_unexpected_types_when_dispatching() -> None:
    with pytest.raises(UserError, match="unknown @type"):
        m.parse_message({"@context": CTX, "@type": "TransferPauseMessage"})
    with pytest.raises(UserError, match="expected TransferStartMessage"):
        m.parse_message(
            {"@context": CTX, "@type": "TransferCompletionMessage", **PIDS}, expect=(m.TransferStartMessage,)
        )
    with pytest.raises(UserError, match="JSON object"):
        m.parse_message(["not", "an", "object"])


def test_event_type_outside_accepted_and_finalized_is_refused_when_received() -> None:
    with pytest.raises(UserError, match="eventType"):
        m.parse_message(
            {"@context": CTX, "@type": "ContractNegotiationEventMessage", **PIDS, "eventType": "AGREED"}
        )


def test_reason_texts_reads_strings_objects_and_unknown_shapes_when_listed() -> None:
    reasons: tuple[m.Reason, ...] = ("plain", {"message": "tck"}, {"@value": "ld"}, {"code": 7})
    assert m.reason_texts(reasons) == ["plain", "tck", "ld", "{'code': 7}"]
    assert m.reason_texts(None) == []


def test_data_address_property_is_found_by_name_when_present() -> None:
    address = m.DataAddress(
        endpointType="https://w3id.org/idsa/v4.1/HTTP",
        endpointProperties=(m.EndpointProperty(name="authorization", value="t"),),
    )
    assert address.endpoint_property("authorization") == "t"
    assert address.endpoint_property("authType") is None


def test_version_response_advertises_dsp_2025_1_with_dcp_when_built(validate: Validate) -> None:
    body = version_response("/api/dsp/2025-1/", service_id="did:web:h#dsp").to_wire()
    assert validate(body, "common/protocol-version-schema.json") == []
    assert body == {
        "protocolVersions": [
            {
                "version": "2025-1",
                "path": "/api/dsp/2025-1",
                "binding": "HTTPS",
                "identifierType": "did:web",
                "serviceId": "did:web:h#dsp",
                "auth": {"protocol": "DCP", "version": "1.0", "profile": ["vc11-sl2021/jwt"]},
            }
        ]
    }


def test_version_response_refuses_a_relative_path_when_configured() -> None:
    with pytest.raises(ConfigError):
        version_response("api/dsp")


def test_dsp_base_url_joins_root_and_advertised_path_when_peer_speaks_2025_1(
    dsp_examples: dict[str, Any],
) -> None:
    peer = m.VersionResponse.from_wire(dsp_examples["common/protocol-version"])
    assert dsp_base_url("https://peer.example/", peer) == "https://peer.example/some/path/2025-1"
    old = m.VersionResponse(protocolVersions=(m.ProtocolVersion(version="2024-1", path="/v"),))
    with pytest.raises(UserError, match="2025-1"):
        dsp_base_url("https://peer.example", old)
