"""DSP catalog answers: datasets with their offers, filtered by each offer's access policy for the caller."""

from __future__ import annotations

from typing import Any

from d4h.catalog.registry import DatasetEntry, OfferRef
from d4h.contracts.enforcement import Counterparty, decide
from d4h.dsp.messages import DSP_CONTEXT, CatalogRequestMessage, parse_message
from d4h.dsp.version import DEFAULT_BASE_PATH
from d4h.errors import NotFound, UserError
from d4h.policy import Scope

FORMATS = ("HttpData-PULL", "Analysis-PULL")


def _service_id(node: Any) -> str:
    return f"{node.trust.did}#dsp"


def _data_service(node: Any) -> dict[str, Any]:
    return {
        "@id": _service_id(node),
        "@type": "DataService",
        "endpointURL": node.settings.base_url + DEFAULT_BASE_PATH,
    }


def _visible_offers(node: Any, caller: Counterparty, dataset_id: str) -> list[OfferRef]:
    out = []
    for ref in node.registry.offers_for(dataset_id):
        decision = decide(ref.access_policy, caller, Scope.CATALOG, node.clock, dataset_id=dataset_id)
        if decision.allowed:
            out.append(ref)
    return out


def _visible_definitions(node: Any, caller: Counterparty) -> list[Any]:
    """Contract definitions whose access policy lets this caller see them: one decision per definition,
    not per dataset, so a catalog of 10,000 datasets costs a handful of policy evaluations."""
    out = []
    policies: dict[str, Any] = {}
    for cd in node.registry.contract_definitions():
        if cd.access_policy_id not in policies:
            policy = node.registry.policy(cd.access_policy_id)
            policies[cd.access_policy_id] = decide(policy, caller, Scope.CATALOG, node.clock).allowed
        if policies[cd.access_policy_id]:
            out.append(cd)
    return out


def _dataset(node: Any, entry: DatasetEntry, offers: list[OfferRef]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "@id": entry.id,
        "@type": "Dataset",
        "hasPolicy": [ref.body() for ref in offers],
        "distribution": [
            {"@type": "Distribution", "format": f, "accessService": _service_id(node)} for f in FORMATS
        ],
    }
    return doc


def visible_catalog(
    node: Any, caller: Counterparty, body: Any, *, offset: int, limit: int
) -> tuple[dict[str, Any], int]:
    msg = parse_message(body, expect=(CatalogRequestMessage,))
    assert isinstance(msg, CatalogRequestMessage)
    if msg.filter:
        raise UserError("catalog filters are not supported by this connector")
    definitions = _visible_definitions(node, caller)
    visible_ids = sorted({ds for cd in definitions for ds in cd.dataset_ids})
    page_ids = visible_ids[offset : offset + limit]
    contract_policies = {
        cd.contract_policy_id: node.registry.policy(cd.contract_policy_id) for cd in definitions
    }
    page = []
    for dataset_id in page_ids:
        entry = node.registry.dataset(dataset_id)
        offers = [
            OfferRef(
                node.registry.offer_id_for(cd.id, dataset_id, contract_policies[cd.contract_policy_id]),
                dataset_id,
                cd,
                contract_policies[cd.contract_policy_id],  # access policy not needed on the wire
                contract_policies[cd.contract_policy_id],
            )
            for cd in definitions
            if dataset_id in cd.dataset_ids
        ]
        page.append((entry, offers))
    catalog: dict[str, Any] = {
        "@context": [DSP_CONTEXT],
        "@id": f"{node.trust.did}#catalog",
        "@type": "Catalog",
        "participantId": node.trust.did,
        "service": [_data_service(node)],
    }
    if page:
        catalog["dataset"] = [_dataset(node, e, offers) for e, offers in page]
    return catalog, len(visible_ids)


def dataset_for(node: Any, caller: Counterparty, dataset_id: str) -> dict[str, Any]:
    try:
        entry = node.registry.dataset(dataset_id)
    except NotFound:
        raise NotFound(f"dataset {dataset_id} not found") from None
    offers = _visible_offers(node, caller, dataset_id)
    if not offers:
        raise NotFound(f"dataset {dataset_id} not found")
    return {"@context": [DSP_CONTEXT], **_dataset(node, entry, offers)}
