"""Management API of the catalog: datasets, policy definitions, contract definitions, remote catalogs (admin)."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from d4h.catalog.describe import describe
from d4h.catalog.healthdcat import dataset_graph, to_turtle
from d4h.catalog.healthdcat import to_jsonld as graph_jsonld
from d4h.catalog.registry import ContractDefinition, DatasetEntry
from d4h.dsp.version import DEFAULT_BASE_PATH
from d4h.node.deps import AdminDep, NodeDep
from d4h.node.media import JSONLD_DOCUMENT, JsonLdResponse, TurtleResponse
from d4h.policy import to_jsonld, vocabulary_document
from d4h.trust.did import did_from_url

router = APIRouter(prefix="/api/v1", tags=["catalog"])
public_router = APIRouter(tags=["catalog"])


def _description(node: Any, dataset_id: str) -> Any:
    s = node.settings
    return describe(
        node.registry.dataset(dataset_id),
        base_url=s.base_url,
        publisher=s.participant.legal_name or s.participant.name,
        hdab_name="Health Data Access Body",
        hdab_url=s.authority_url,
    )


@public_router.get(
    "/catalog/healthdcat/{dataset_id}.jsonld",
    response_class=JsonLdResponse,
    responses=JSONLD_DOCUMENT,
    operation_id="catalog-healthdcat-jsonld",
)
def healthdcat_jsonld(node: NodeDep, dataset_id: str) -> Response:
    """The dataset's HealthDCAT-AP Release 8 description (JSON-LD with an inline context; public metadata)."""
    graph = dataset_graph(_description(node, dataset_id))
    return JsonLdResponse(orjson.dumps(graph_jsonld(graph)))


@public_router.get(
    "/catalog/healthdcat/{dataset_id}.ttl",
    response_class=TurtleResponse,
    operation_id="catalog-healthdcat-turtle",
)
def healthdcat_turtle(node: NodeDep, dataset_id: str) -> Response:
    return TurtleResponse(to_turtle(dataset_graph(_description(node, dataset_id))))


@public_router.get("/api/v1/policy/vocabulary", operation_id="policy-vocabulary")
def policy_vocabulary() -> dict[str, Any]:
    """The d4h health profile: left operands, allowed values and operators this node evaluates."""
    return vocabulary_document()


class DatasetCreate(BaseModel):
    id: str = Field(min_length=1, max_length=200)
    title: str = Field(min_length=1, max_length=500)
    description: str = Field(default="", max_length=10_000)
    metadata: dict[str, Any] = Field(default_factory=dict, description="HealthDCAT-AP description fields")


class DatasetPublic(BaseModel):
    id: str
    title: str
    description: str
    metadata: dict[str, Any]
    created_at: str


def _dataset(e: DatasetEntry) -> DatasetPublic:
    return DatasetPublic(
        id=e.id, title=e.title, description=e.description, metadata=e.metadata, created_at=e.created_at
    )


@router.post("/datasets", status_code=201, operation_id="catalog-dataset-create")
def create_dataset(node: NodeDep, admin: AdminDep, body: DatasetCreate) -> DatasetPublic:
    entry = node.registry.create_dataset(
        body.id, title=body.title, description=body.description, metadata=body.metadata
    )
    node.audit.append(actor=admin, action="dataset.create", obj=body.id)
    return _dataset(entry)


@router.get("/datasets", operation_id="catalog-dataset-list")
def list_datasets(
    node: NodeDep,
    admin: AdminDep,
    offset: int = Query(0, ge=0, le=2**63 - 1),  # SQL's BIGINT: larger cannot be bound
    limit: int = Query(100, ge=1, le=1000),
) -> list[DatasetPublic]:
    return [_dataset(e) for e in node.registry.datasets(offset=offset, limit=limit)]


@router.get("/datasets/{dataset_id}", operation_id="catalog-dataset-get")
def get_dataset(node: NodeDep, admin: AdminDep, dataset_id: str) -> DatasetPublic:
    return _dataset(node.registry.dataset(dataset_id))


@router.delete("/datasets/{dataset_id}", status_code=204, operation_id="catalog-dataset-delete")
def delete_dataset(node: NodeDep, admin: AdminDep, dataset_id: str) -> Response:
    node.registry.delete_dataset(dataset_id)
    node.audit.append(actor=admin, action="dataset.delete", obj=dataset_id)
    return Response(status_code=204)


class PolicyCreate(BaseModel):
    id: str = Field(min_length=1, max_length=200)
    policy: dict[str, Any] = Field(description="ODRL policy in compact JSON-LD (d4h health profile)")


@router.post("/policies", status_code=201, operation_id="catalog-policy-create")
def create_policy(node: NodeDep, admin: AdminDep, body: PolicyCreate) -> dict[str, Any]:
    policy = node.registry.create_policy(body.id, body.policy)
    node.audit.append(actor=admin, action="policy.create", obj=body.id)
    return to_jsonld(policy)


@router.get("/policies", operation_id="catalog-policy-list")
def list_policies(node: NodeDep, admin: AdminDep) -> list[dict[str, Any]]:
    return [to_jsonld(p) for p in node.registry.policies()]


class ContractDefinitionCreate(BaseModel):
    id: str = Field(min_length=1, max_length=200)
    access_policy_id: str
    contract_policy_id: str
    dataset_ids: list[str] = Field(min_length=1)


@router.post("/contractdefinitions", status_code=201, operation_id="catalog-contract-definition-create")
def create_contract_definition(
    node: NodeDep, admin: AdminDep, body: ContractDefinitionCreate
) -> ContractDefinition:
    cd = node.registry.create_contract_definition(
        body.id,
        access_policy_id=body.access_policy_id,
        contract_policy_id=body.contract_policy_id,
        dataset_ids=body.dataset_ids,
    )
    node.audit.append(actor=admin, action="contractdefinition.create", obj=body.id)
    return cd


@router.get("/contractdefinitions", operation_id="catalog-contract-definition-list")
def list_contract_definitions(node: NodeDep, admin: AdminDep) -> list[ContractDefinition]:
    return list(node.registry.contract_definitions())


class CatalogRequest(BaseModel):
    provider_url: str = Field(min_length=8, max_length=500, description="the provider node's base URL")
    offset: int = Field(default=0, ge=0)
    limit: int = Field(default=100, ge=1, le=500)


@router.post("/catalog/request", operation_id="catalog-remote-request")
def remote_catalog(node: NodeDep, admin: AdminDep, body: CatalogRequest) -> dict[str, Any]:
    """Fetch another participant's DSP catalog (authenticated with this node's credentials)."""
    base = body.provider_url.rstrip("/")
    message = {
        "@context": ["https://w3id.org/dspace/2025/1/context.jsonld"],
        "@type": "CatalogRequestMessage",
    }
    catalog, next_link = node.connector.dsp.request_catalog(
        base + DEFAULT_BASE_PATH, did_from_url(base), message, offset=body.offset, limit=body.limit
    )
    node.audit.append(actor=admin, action="catalog.request", obj=base)
    return {"catalog": catalog, "next": next_link}
