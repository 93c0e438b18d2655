"""DSP TCK mode (conformance runs only): the TCK's seeded ids, scripted behaviour by id, and its hooks.

Seeds follow the TCK's conventions (dataset ``ACN0101`` offered as ``CD123:ACN0101:456``, agreement
``ATP0101`` for ``HttpData-PULL``). Scripts reproduce what the TCK expects the connector under test to do
in each scenario. The hooks let the TCK make this node start a negotiation or transfer as consumer.
Enabled only with ``tck_mode = true`` (which the settings refuse outside dev mode).
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import insert, select

from d4h.catalog.registry import Registry
from d4h.clock import Clock, utc_iso
from d4h.contracts import transfer as tp
from d4h.contracts.automation import Scripts
from d4h.contracts.connector import Connector, new_pid
from d4h.node.deps import AdminDep, NodeDep
from d4h.store.db import transaction
from d4h.store.tables.connector import agreements

OPEN_POLICY = {"@type": "Set", "permission": [{"action": "use"}]}
ANY_CONSUMER = "*"  # seeded agreements are usable by any verified member (the TCK's identity is not known)

W = "wait"
PROVIDER_NEGOTIATIONS: dict[str, dict[str, list[str]]] = {
    "ACN0101": {"REQUESTED": ["offer"]},
    "ACN0102": {"REQUESTED": ["offer", "terminate"]},
    "ACN0103": {"REQUESTED": ["offer"], "ACCEPTED": ["agree"], "VERIFIED": ["finalize"]},
    "ACN0104": {"REQUESTED": ["agree"], "VERIFIED": ["finalize"]},
    "ACN0201": {"REQUESTED": ["terminate"]},
    "ACN0202": {"REQUESTED": [W]},
    "ACN0203": {"REQUESTED": ["agree"], "VERIFIED": [W]},
    "ACN0204": {"REQUESTED": ["offer"]},
    "ACN0205": {"REQUESTED": ["offer"], "OFFERED": ["terminate"]},
    "ACN0206": {"REQUESTED": ["offer"], "ACCEPTED": ["terminate"]},
    "ACN0207": {"REQUESTED": ["agree"], "VERIFIED": ["terminate"]},
    "ACN0301": {"REQUESTED": ["agree"], "VERIFIED": ["finalize"]},
    "ACN0302": {"REQUESTED": ["offer"]},
    "ACN0303": {"REQUESTED": ["offer"], "ACCEPTED": [W]},
    "ACN0304": {"REQUESTED": ["offer", "terminate"]},
}
# Consumer behaviour for negotiations started through the hook, keyed by the dataset id it names.
CONSUMER_NEGOTIATIONS: dict[str, dict[str, list[str]]] = {
    "CNC0102": {"OFFERED": ["counter"]},
    "CNC0103": {"OFFERED": ["terminate"]},
    "CNC0202": {"REQUESTED": ["terminate"]},
    "CNC0203": {"AGREED": ["terminate"]},
    "CNC0204": {"OFFERED": [W]},
    "CNC0302": {"OFFERED": [W]},
    "CNC0303": {"OFFERED": [W]},
    "CNC0306": {"AGREED": [W]},
}
PROVIDER_TRANSFERS: dict[str, dict[str, list[str]]] = {
    "ATP0101": {"REQUESTED": ["start"], "STARTED": ["terminate"]},
    "ATP0102": {"REQUESTED": ["start"], "STARTED": ["complete"]},
    "ATP0103": {"REQUESTED": ["start"], "STARTED": ["suspend"], "SUSPENDED": ["terminate"]},
    "ATP0104": {"REQUESTED": ["start"], "STARTED": ["suspend", "complete"], "SUSPENDED": ["start"]},
    "ATP0105": {"REQUESTED": ["terminate"]},
    **{f"ATP02{n:02d}": {"REQUESTED": ["start"], "STARTED": [W], "SUSPENDED": [W]} for n in (1, 2, 3, 4)},
    "ATP0205": {"REQUESTED": [W]},
    "ATP0301": {"REQUESTED": [W]},
    "ATP0302": {"REQUESTED": [W]},
    **{f"ATP03{n:02d}": {"REQUESTED": ["start"], "STARTED": [W], "SUSPENDED": [W]} for n in (3, 4, 5, 6)},
}
CONSUMER_TRANSFERS: dict[str, dict[str, list[str]]] = {
    "ATPC0201": {"STARTED": ["terminate"]},
    "ATPC0202": {"STARTED": ["complete"]},
    "ATPC0203": {"STARTED": ["suspend"], "SUSPENDED": ["terminate"]},
    "ATPC0205": {"REQUESTED": ["terminate"]},
}
CATALOG_DATASETS = ("CAT0101",)
TRANSFER_DATASET = "TCKDATA"


def seed(registry: Registry, connector: Connector, clock: Clock) -> Scripts:
    """Idempotently seed the TCK datasets, offers and agreements; return the scripts."""
    datasets = [*CATALOG_DATASETS, *PROVIDER_NEGOTIATIONS, TRANSFER_DATASET]
    existing = {d.id for d in registry.datasets(limit=10_000)}
    for ds in datasets:
        if ds not in existing:
            registry.create_dataset(
                ds, title=f"TCK dataset {ds}", description="seeded for the DSP TCK", metadata={}
            )
    if not any(p.uid == "tck-open" for p in registry.policies()):
        registry.create_policy("tck-open", dict(OPEN_POLICY))
    if not any(cd.id == "CD123" for cd in registry.contract_definitions()):
        registry.create_contract_definition(
            "CD123", access_policy_id="tck-open", contract_policy_id="tck-open", dataset_ids=datasets
        )
    registry.offer_suffixes["CD123"] = "456"
    with transaction(connector.engine) as conn:
        for agreement_id in PROVIDER_TRANSFERS:
            if conn.execute(select(agreements.c.id).where(agreements.c.id == agreement_id)).first() is None:
                doc = {
                    "@id": agreement_id,
                    "@type": "Agreement",
                    "target": TRANSFER_DATASET,
                    "assigner": connector.own_did,
                    "assignee": ANY_CONSUMER,
                    "timestamp": utc_iso(clock.now()),
                    "permission": [{"action": "use"}],
                }
                conn.execute(
                    insert(agreements).values(
                        id=agreement_id,
                        negotiation_id="tck-seed",
                        dataset_id=TRANSFER_DATASET,
                        provider=connector.own_did,
                        consumer=ANY_CONSUMER,
                        doc=orjson.dumps(doc).decode(),
                        signed_at=utc_iso(clock.now()),
                    )
                )
    return Scripts(
        negotiations={**PROVIDER_NEGOTIATIONS, **CONSUMER_NEGOTIATIONS},
        transfers={**PROVIDER_TRANSFERS, **CONSUMER_TRANSFERS},
    )


router = APIRouter(prefix="/tck", tags=["tck"])


class NegotiationHook(BaseModel):
    datasetId: str
    offerId: str
    providerId: str
    connectorAddress: str


class TransferHook(BaseModel):
    agreementId: str
    format: str
    providerId: str
    connectorAddress: str


@router.post("/negotiations/requests", operation_id="tck-negotiation-initiate")
def initiate_negotiation(node: NodeDep, admin: AdminDep, body: NegotiationHook) -> dict[str, Any]:
    offer = {
        "@id": body.offerId,
        "@type": "Offer",
        "target": body.datasetId,
        "permission": [{"action": "use"}],
    }
    n = node.connector.start_negotiation(
        provider_dsp_url=body.connectorAddress, provider_did=body.providerId, offer=offer, actor=admin
    )
    return {"id": n.id, "consumerPid": n.consumer_pid}


@router.post("/transfers/requests", operation_id="tck-transfer-initiate")
def initiate_transfer(node: NodeDep, admin: AdminDep, body: TransferHook) -> dict[str, Any]:
    c = node.connector
    t = tp.start_request(
        id=uuid.uuid4().hex,
        consumer_pid=new_pid(),
        counter_party_id=body.providerId,
        counter_party_address=body.connectorAddress.rstrip("/"),
        agreement_id=body.agreementId,
        format=body.format,
        at=c.clock.now(),
    )
    with transaction(c.engine) as conn:
        c.transfers.create(t, conn)
        c.audit.append(actor=admin, action="transfer.start", obj=t.id, params={"tck": True}, conn=conn)
    c.wake()
    return {"id": t.id, "consumerPid": t.consumer_pid}
