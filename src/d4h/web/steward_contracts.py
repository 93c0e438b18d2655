"""The data steward's contract screens: policies and offers, negotiations, agreements and transfers.

Every action goes through the node's own services (registry, connector) as ``web:<username>``; the connector
audits its management operations in the transaction that changes the process, the registry's offer creation
is audited here as the catalog management API does. Pure helpers (what a row shows, which actions a process
allows now) sit above the routes so the templates never decide.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import RedirectResponse

from d4h.catalog.registry import ContractDefinition, DatasetEntry, OfferRef
from d4h.contracts.negotiation import ContractNegotiation
from d4h.contracts.states import (
    NEGOTIATION_TRANSITIONS,
    TRANSFER_TRANSITIONS,
    NegotiationState,
    TransferState,
)
from d4h.contracts.transfer import TransferProcess
from d4h.contracts.transfer import suspend as suspend_transfer
from d4h.contracts.transfer import terminate as terminate_transfer
from d4h.errors import D4HError, UserError
from d4h.node.errors import status_for
from d4h.policy import Policy, to_jsonld
from d4h.web.accounts import WebRole
from d4h.web.pages import NavItem, Page, WebState, page_for, render, viewer_of

NAV = (
    NavItem("/ui/steward/policies", "Policies & offers"),
    NavItem("/ui/steward/negotiations", "Negotiations"),
    NavItem("/ui/steward/agreements", "Agreements"),
    NavItem("/ui/steward/transfers", "Transfers"),
)
LIST_LIMIT = 200
REASON_MAX = 2000
TRANSFER_VERBS = ("suspend", "resume", "terminate")

# -- pure helpers ------------------------------------------------------------------------------------


def pretty(doc: Any) -> str:
    """JSON for a <pre> block: indented, keys in the order the document has them."""
    return json.dumps(doc, indent=2, ensure_ascii=False, default=str)


@dataclass(frozen=True)
class PolicyRow:
    id: str
    odrl: str
    access_of: tuple[str, ...]  # contract definitions that use it as access policy
    contract_of: tuple[str, ...]  # ... and as contract policy


def policy_rows(policies: Sequence[Policy], definitions: Sequence[ContractDefinition]) -> list[PolicyRow]:
    rows = []
    for policy in policies:
        doc = to_jsonld(policy)
        pid = str(doc.get("@id", ""))
        rows.append(
            PolicyRow(
                id=pid,
                odrl=pretty(doc),
                access_of=tuple(d.id for d in definitions if d.access_policy_id == pid),
                contract_of=tuple(d.id for d in definitions if d.contract_policy_id == pid),
            )
        )
    return rows


def offer_rows(
    datasets: Sequence[DatasetEntry], offers_of: Callable[[str], list[OfferRef]]
) -> list[OfferRef]:
    return [offer for d in datasets for offer in offers_of(d.id)]


def clean_reason(text: str, *, required: bool = True) -> str:
    reason = " ".join(text.split())  # one line: it travels in a DSP message and an audit entry
    if required and not reason:
        raise UserError("give a reason: it is sent to the counter-party and kept in the audit log")
    if len(reason) > REASON_MAX:
        raise UserError(f"the reason is longer than {REASON_MAX} characters")
    return reason


def can_terminate_negotiation(n: ContractNegotiation) -> bool:
    if n.is_final:
        return False
    if n.peer_pid is None:  # nobody to tell: it ends at once
        return True
    return (n.side, n.state, NegotiationState.TERMINATING) in NEGOTIATION_TRANSITIONS


def transfer_actions(t: TransferProcess) -> tuple[str, ...]:
    """What the steward may do with this transfer now, per the DSP state machine of this side."""
    if t.is_final:
        return ()
    out = []
    if (t.side, t.state, TransferState.SUSPENDING) in TRANSFER_TRANSITIONS:
        out.append("suspend")
    if (
        t.state is TransferState.SUSPENDED
        and (t.side, t.state, TransferState.STARTING) in TRANSFER_TRANSITIONS
    ):
        out.append("resume")
    if t.peer_pid is None or (t.side, t.state, TransferState.TERMINATING) in TRANSFER_TRANSITIONS:
        out.append("terminate")
    return tuple(out)


def dataset_of(n: ContractNegotiation) -> str:
    if n.agreement is not None:
        return n.agreement.target
    return n.offer.target or "" if n.offer is not None else ""


def policy_of_agreement(doc: dict[str, Any]) -> dict[str, Any]:
    """The agreement's ODRL rules without the envelope (ids, parties, timestamp) shown beside it."""
    envelope = ("@context", "@id", "@type", "assigner", "assignee", "target", "timestamp")
    return {k: v for k, v in doc.items() if k not in envelope}


# -- routes ------------------------------------------------------------------------------------------


def add_routes(router: APIRouter, web: WebState) -> None:
    node = web.node
    registry, connector = node.registry, node.connector

    def page(request: Request) -> Page:
        viewer_of(request, WebRole.STEWARD)
        return page_for(web, request)

    def actor(request: Request) -> str:
        return f"web:{viewer_of(request, WebRole.STEWARD).account.username}"

    def failed(request: Request, exc: D4HError) -> Response:
        return render("error.html", page(request), status=status_for(exc), message=exc.message)

    def policies_page(request: Request, *, error: str = "", status: int = 200, **values: str) -> Response:
        p = page(request)
        definitions = registry.contract_definitions()
        datasets = registry.datasets()
        return render(
            "steward_policies.html",
            p,
            status=status,
            policies=policy_rows(registry.policies(), definitions),
            definitions=definitions,
            offers=offer_rows(datasets, registry.offers_for),
            datasets=datasets,
            error=error,
            notice=request.query_params.get("created", ""),
            values=values,
        )

    @router.get("/steward/policies")
    def policies(request: Request) -> Response:
        return policies_page(request)

    @router.post("/steward/offers")
    def create_offer(
        request: Request,
        definition_id: Annotated[str, Form(max_length=200)] = "",
        dataset_id: Annotated[str, Form(max_length=200)] = "",
        access_policy_id: Annotated[str, Form(max_length=200)] = "",
        contract_policy_id: Annotated[str, Form(max_length=200)] = "",
    ) -> Response:
        who = actor(request)
        values = {"definition_id": definition_id.strip(), "dataset_id": dataset_id,
                  "access_policy_id": access_policy_id, "contract_policy_id": contract_policy_id}  # fmt: skip
        try:
            if not (dataset_id and access_policy_id and contract_policy_id):
                raise UserError("choose a dataset, an access policy and a contract policy")
            cd = registry.create_contract_definition(
                values["definition_id"],
                access_policy_id=access_policy_id,
                contract_policy_id=contract_policy_id,
                dataset_ids=[dataset_id],
            )
        except D4HError as exc:
            return policies_page(request, error=exc.message, status=status_for(exc), **values)
        node.audit.append(
            actor=who,
            action="contractdefinition.create",
            obj=cd.id,
            params={
                "dataset": dataset_id,
                "access_policy": access_policy_id,
                "contract_policy": contract_policy_id,
            },
        )
        return RedirectResponse(f"/ui/steward/policies?created={cd.id}", status_code=303)

    @router.get("/steward/negotiations")
    def negotiations(request: Request) -> Response:
        p = page(request)
        return render(
            "steward_negotiations.html",
            p,
            negotiations=connector.negotiations.recent(limit=LIST_LIMIT),
            dataset_of=dataset_of,
        )

    def negotiation_page(
        request: Request, negotiation_id: str, *, error: str = "", status: int = 200
    ) -> Response:
        p = page(request)
        try:
            n = connector.negotiations.get(negotiation_id)
        except D4HError as exc:
            return failed(request, exc)
        offer = n.offer.model_dump(mode="json", by_alias=True, exclude_none=True) if n.offer else None
        return render(
            "steward_negotiation.html",
            p,
            status=status,
            n=n,
            dataset=dataset_of(n),
            offer=pretty(offer) if offer else "",
            agreement_id=n.agreement.id if n.agreement else "",
            can_terminate=can_terminate_negotiation(n),
            error=error,
        )

    @router.get("/steward/negotiations/{negotiation_id}")
    def negotiation(request: Request, negotiation_id: str) -> Response:
        return negotiation_page(request, negotiation_id)

    @router.post("/steward/negotiations/{negotiation_id}/terminate")
    def terminate_negotiation(
        request: Request, negotiation_id: str, reason: Annotated[str, Form(max_length=4000)] = ""
    ) -> Response:
        who = actor(request)
        try:
            connector.terminate_negotiation(negotiation_id, clean_reason(reason), actor=who)
        except D4HError as exc:
            return negotiation_page(request, negotiation_id, error=exc.message, status=status_for(exc))
        return RedirectResponse(f"/ui/steward/negotiations/{negotiation_id}", status_code=303)

    @router.get("/steward/agreements")
    def agreements(request: Request) -> Response:
        p = page(request)
        return render("steward_agreements.html", p, agreements=connector.agreements.recent(limit=LIST_LIMIT))

    @router.get("/steward/agreements/{agreement_id:path}")
    def agreement(request: Request, agreement_id: str) -> Response:
        p = page(request)
        try:
            a = connector.agreements.get(agreement_id)
        except D4HError as exc:
            return failed(request, exc)
        under = [t for t in connector.transfers.recent(limit=1000) if t.agreement_id == agreement_id]
        return render(
            "steward_agreement.html",
            p,
            a=a,
            policy=pretty(policy_of_agreement(a["doc"])),
            document=pretty(a["doc"]),
            transfers=under,
        )

    @router.get("/steward/transfers")
    def transfers(request: Request) -> Response:
        p = page(request)
        return render(
            "steward_transfers.html",
            p,
            transfers=connector.transfers.recent(limit=LIST_LIMIT),
            actions_of=transfer_actions,
        )

    def transfer_page(request: Request, transfer_id: str, *, error: str = "", status: int = 200) -> Response:
        p = page(request)
        try:
            t = connector.transfers.get(transfer_id)
        except D4HError as exc:
            return failed(request, exc)
        return render(
            "steward_transfer.html", p, status=status, t=t, actions=transfer_actions(t), error=error
        )

    @router.get("/steward/transfers/{transfer_id}")
    def transfer(request: Request, transfer_id: str) -> Response:
        return transfer_page(request, transfer_id)

    @router.post("/steward/transfers/{transfer_id}/{verb}")
    def change_transfer(
        request: Request, transfer_id: str, verb: str, reason: Annotated[str, Form(max_length=4000)] = ""
    ) -> Response:
        who = actor(request)
        try:
            if verb not in TRANSFER_VERBS:
                raise UserError(f"unknown transfer action {verb!r}")
            if verb == "resume":
                connector.resume_transfer(transfer_id, actor=who)
            else:
                why = clean_reason(reason)
                now = connector.clock.now()
                change = (
                    (lambda t: suspend_transfer(t, at=now, reason=why))
                    if verb == "suspend"
                    else (lambda t: terminate_transfer(t, at=now, reason=why))
                )
                connector.decide_transfer(transfer_id, change, actor=who, action=f"transfer.{verb}")
        except D4HError as exc:
            return transfer_page(request, transfer_id, error=exc.message, status=status_for(exc))
        return RedirectResponse(f"/ui/steward/transfers/{transfer_id}", status_code=303)


__all__ = [
    "NAV",
    "PolicyRow",
    "add_routes",
    "can_terminate_negotiation",
    "clean_reason",
    "offer_rows",
    "policy_of_agreement",
    "policy_rows",
    "pretty",
    "transfer_actions",
]
