"""[H] The holder's registry: datasets, policy definitions and contract definitions (which offers exist).

An offer is a contract definition's contract policy applied to one of its datasets; its id is
``<definition>:<dataset>:<policy digest>`` so it changes whenever the policy does, and a consumer
can never get an agreement on a policy the holder no longer offers.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Engine, delete, insert, select

from d4h.clock import Clock, utc_iso
from d4h.errors import Conflict, NotFound, UserError
from d4h.policy import Policy, PolicyType, parse_policy, to_jsonld
from d4h.store import raw
from d4h.store.db import reading, transaction
from d4h.store.tables.connector import contract_definitions, datasets, policy_definitions


@dataclass(frozen=True)
class DatasetEntry:
    id: str
    title: str
    description: str
    metadata: dict[str, Any]
    created_at: str


@dataclass(frozen=True)
class ContractDefinition:
    id: str
    access_policy_id: str
    contract_policy_id: str
    dataset_ids: tuple[str, ...]


@dataclass(frozen=True)
class OfferRef:
    """One offer: which definition, which dataset, the policies behind it, and the wire body (no target)."""

    offer_id: str
    dataset_id: str
    definition: ContractDefinition
    access_policy: Policy
    contract_policy: Policy

    def policy(self) -> Policy:
        """The offer as a policy (the contract policy with the offer's id): what negotiations evaluate."""
        return _offer_policy(self.offer_id, self.contract_policy)

    def body(self) -> dict[str, Any]:
        doc = to_jsonld(self.contract_policy)
        doc["@id"] = self.offer_id
        doc["@type"] = "Offer"
        doc.pop("target", None)
        return doc


@functools.lru_cache(maxsize=4096)
def _offer_policy(offer_id_: str, contract_policy: Policy) -> Policy:
    # Offers never change (their id carries the policy digest); parsing one per request cost each negotiation.
    doc = to_jsonld(contract_policy)
    doc["@id"] = offer_id_
    doc["@type"] = "Offer"
    doc.pop("target", None)
    return parse_policy(doc)


def _check_id(kind: str, value: str) -> str:
    if not value or len(value) > 200 or any(c.isspace() for c in value):
        raise UserError(f"{kind} id {value!r} must be 1-200 characters without spaces")
    return value


def _stored_json(value: Any, what: str) -> str:
    """JSON for a column; what Python parsed but JSON cannot hold (an integer beyond 64 bits) is the
    caller's error, named, not a 500."""
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError as exc:
        raise UserError(f"{what} cannot be stored: {exc}") from None


@functools.lru_cache(maxsize=4096)
def _policy_digest(policy: Policy) -> str:
    # Policies never change, so neither does their digest: hashing one per offer cost every request.
    return hashlib.sha256(orjson.dumps(to_jsonld(policy), option=orjson.OPT_SORT_KEYS)).hexdigest()[:8]


def offer_id(definition_id: str, dataset_id: str, policy: Policy) -> str:
    return f"{definition_id}:{dataset_id}:{_policy_digest(policy)}"


# Every contract request looks up its offer (see ``find_offer``): straight to the driver (d4h.store.raw).
_DEFINITION = raw.Sql(
    "SELECT id, access_policy_id, contract_policy_id, dataset_ids FROM contract_definitions WHERE id = :id"
)


class Registry:
    def __init__(self, engine: Engine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock
        # Fixed offer-id suffixes per contract definition (the DSP TCK seeds ids like CD123:ACN0101:456).
        self.offer_suffixes: dict[str, str] = {}
        # Policy definitions never change once created, so parsed policies can be kept (parsing costs ms).
        self._policies: dict[str, Policy] = {}

    def offer_id_for(self, definition_id: str, dataset_id: str, policy: Policy) -> str:
        suffix = self.offer_suffixes.get(definition_id)
        return (
            f"{definition_id}:{dataset_id}:{suffix}"
            if suffix
            else offer_id(definition_id, dataset_id, policy)
        )

    # datasets
    def create_dataset(
        self, dataset_id: str, *, title: str, description: str, metadata: dict[str, Any]
    ) -> DatasetEntry:
        _check_id("dataset", dataset_id)
        entry = DatasetEntry(dataset_id, title, description, metadata, utc_iso(self._clock.now()))
        stored = _stored_json(metadata, "dataset metadata")
        with transaction(self._engine) as conn:
            if conn.execute(select(datasets.c.id).where(datasets.c.id == dataset_id)).first():
                raise Conflict(f"dataset {dataset_id} already exists")
            conn.execute(
                insert(datasets).values(
                    id=dataset_id,
                    title=title,
                    description=description,
                    metadata=stored,
                    created_at=entry.created_at,
                )
            )
        return entry

    def dataset(self, dataset_id: str) -> DatasetEntry:
        with reading(self._engine) as conn:
            row = conn.execute(select(datasets).where(datasets.c.id == dataset_id)).first()
        if row is None:
            raise NotFound(f"dataset {dataset_id} not found")
        return DatasetEntry(row.id, row.title, row.description, orjson.loads(row.metadata), row.created_at)

    def datasets(self, *, offset: int = 0, limit: int = 1000) -> list[DatasetEntry]:
        with reading(self._engine) as conn:
            rows = conn.execute(select(datasets).order_by(datasets.c.id).offset(offset).limit(limit)).all()
        return [
            DatasetEntry(r.id, r.title, r.description, orjson.loads(r.metadata), r.created_at) for r in rows
        ]

    def delete_dataset(self, dataset_id: str) -> None:
        with transaction(self._engine) as conn:
            if conn.execute(delete(datasets).where(datasets.c.id == dataset_id)).rowcount != 1:
                raise NotFound(f"dataset {dataset_id} not found")

    # policies
    def create_policy(self, policy_id: str, document: dict[str, Any]) -> Policy:
        _check_id("policy", policy_id)
        doc = dict(document)
        doc.setdefault("@id", policy_id)
        doc["@id"] = policy_id
        policy = parse_policy(doc, default_type=PolicyType.SET)  # UserError names a bad term
        with transaction(self._engine) as conn:
            if conn.execute(
                select(policy_definitions.c.id).where(policy_definitions.c.id == policy_id)
            ).first():
                raise Conflict(f"policy {policy_id} already exists")
            conn.execute(
                insert(policy_definitions).values(
                    id=policy_id,
                    policy=orjson.dumps(to_jsonld(policy)).decode(),
                    created_at=utc_iso(self._clock.now()),
                )
            )
        return policy

    def policy(self, policy_id: str) -> Policy:
        cached = self._policies.get(policy_id)
        if cached is not None:
            return cached
        with reading(self._engine) as conn:
            row = conn.execute(
                select(policy_definitions.c.policy).where(policy_definitions.c.id == policy_id)
            ).first()
        if row is None:
            raise NotFound(f"policy {policy_id} not found")
        policy = parse_policy(orjson.loads(row[0]), default_type=PolicyType.SET)
        self._policies[policy_id] = policy
        return policy

    def policies(self) -> list[Policy]:
        with reading(self._engine) as conn:
            rows = conn.execute(select(policy_definitions.c.policy).order_by(policy_definitions.c.id)).all()
        return [parse_policy(orjson.loads(r[0]), default_type=PolicyType.SET) for r in rows]

    # contract definitions
    def create_contract_definition(
        self,
        definition_id: str,
        *,
        access_policy_id: str,
        contract_policy_id: str,
        dataset_ids: Sequence[str],
    ) -> ContractDefinition:
        _check_id("contract definition", definition_id)
        if ":" in definition_id:
            raise UserError("contract definition ids may not contain ':' (it separates offer id parts)")
        self.policy(access_policy_id)
        self.policy(contract_policy_id)
        for ds in dataset_ids:
            self.dataset(ds)
        definition = ContractDefinition(
            definition_id, access_policy_id, contract_policy_id, tuple(dataset_ids)
        )
        with transaction(self._engine) as conn:
            if conn.execute(
                select(contract_definitions.c.id).where(contract_definitions.c.id == definition_id)
            ).first():
                raise Conflict(f"contract definition {definition_id} already exists")
            conn.execute(
                insert(contract_definitions).values(
                    id=definition_id,
                    access_policy_id=access_policy_id,
                    contract_policy_id=contract_policy_id,
                    dataset_ids=orjson.dumps(list(dataset_ids)).decode(),
                    created_at=utc_iso(self._clock.now()),
                )
            )
        return definition

    def contract_definitions(self) -> list[ContractDefinition]:
        with reading(self._engine) as conn:
            rows = conn.execute(select(contract_definitions).order_by(contract_definitions.c.id)).all()
        return [
            ContractDefinition(
                r.id, r.access_policy_id, r.contract_policy_id, tuple(orjson.loads(r.dataset_ids))
            )
            for r in rows
        ]

    def offers_for(self, dataset_id: str) -> list[OfferRef]:
        out = []
        for cd in self.contract_definitions():
            if dataset_id in cd.dataset_ids:
                contract = self.policy(cd.contract_policy_id)
                out.append(
                    OfferRef(
                        self.offer_id_for(cd.id, dataset_id, contract),
                        dataset_id,
                        cd,
                        self.policy(cd.access_policy_id),
                        contract,
                    )
                )
        return out

    def find_offer(self, offer_id_: str) -> OfferRef:
        parts = offer_id_.split(":")
        if len(parts) < 3:
            raise NotFound(f"offer {offer_id_} is not known")
        # Offer ids are "<definition>:<dataset>:<digest>": read the one definition it names, not all of them.
        dataset_id = ":".join(parts[1:-1])
        with reading(self._engine) as conn:
            row = raw.first(conn, _DEFINITION, {"id": parts[0]})
        if row is not None:
            cd = ContractDefinition(row[0], row[1], row[2], tuple(orjson.loads(row[3])))
            if dataset_id in cd.dataset_ids:
                contract = self.policy(cd.contract_policy_id)
                ref = OfferRef(
                    self.offer_id_for(cd.id, dataset_id, contract),
                    dataset_id,
                    cd,
                    self.policy(cd.access_policy_id),
                    contract,
                )
                if ref.offer_id == offer_id_:
                    return ref
        raise NotFound(f"offer {offer_id_} is not known (or no longer offered)")
