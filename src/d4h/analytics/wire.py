"""Wire schemas of federated analysis: coordinator -> holder tasks, and the researcher-facing runs.

A *run* is what a researcher asks for (one function over several holders); the coordinator turns it into
*tasks*, one per holder and round. Holders accept only these typed tasks: a vetted function name, its
parameters, and the data selection (an OMOP cohort with derived variables, or filters on a flat table).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# Every vetted function (d4h.analytics.registry maps each to its holder step and coordinator plan).
FunctionName = Literal[
    "feasibility", "table1", "histogram", "incidence", "kaplan_meier", "cox", "glm", "kmeans", "pathways",
    "fedavg", "similar_patients", "toxicity_incidence", "toxicity_model", "twin_t2d", "twin_t1d",
]  # fmt: skip
RunState = Literal["PENDING", "RUNNING", "COMPLETED", "FAILED"]
HolderState = Literal["PENDING", "RUNNING", "DONE", "FAILED"]
FilterOp = Literal["==", "!=", "<", "<=", ">", ">=", "in", "not in", "is null", "not null"]


class Filter(BaseModel):
    """A row filter on a flat-table dataset (OMOP datasets select rows with a cohort definition)."""

    model_config = ConfigDict(extra="forbid")
    column: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
    op: FilterOp = "=="
    value: Any = None


class Selection(BaseModel):
    """Which rows and columns a task works on."""

    model_config = ConfigDict(extra="forbid")
    cohort: dict[str, Any] | None = Field(default=None, description="OMOP cohort definition (JSON)")
    variables: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="OMOP derived variables by name, e.g. {'age': {'kind': 'age'}}"
    )
    filters: list[Filter] = Field(default_factory=list, description="filters on a flat-table dataset")


class DPRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    epsilon: float = Field(gt=0, le=10)


class SecAggSpec(BaseModel):
    """The round a holder masks its vector for (public keys base64url, fixed by the coordinator)."""

    model_config = ConfigDict(extra="forbid")
    round_id: str
    public_keys: dict[str, str]
    length: int = Field(ge=1)
    attestations: dict[str, str] = Field(
        default_factory=dict, description="per holder: its node key's JWS over its round public key"
    )
    memberships: dict[str, list[str]] = Field(
        default_factory=dict, description="per holder: its MembershipCredential VC-JWTs"
    )


class TaskRequest(BaseModel):
    """One step of one function at one holder."""

    model_config = ConfigDict(extra="forbid")
    task_id: str = Field(min_length=8, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$")
    run_id: str = Field(max_length=64)
    function: FunctionName
    phase: str = Field(default="local", max_length=32)
    selection: Selection = Field(default_factory=Selection)
    params: dict[str, Any] = Field(default_factory=dict)
    state: dict[str, Any] = Field(default_factory=dict, description="round inputs: beta, grid, centroids")
    secagg: SecAggSpec | None = None
    dp: DPRequest | None = None


class TaskReply(BaseModel):
    """What a holder releases for a task: disclosure-checked payload plus what was done to it."""

    task_id: str
    function: FunctionName
    version: str
    code_version: str
    phase: str
    dataset: str
    holder: str
    row_set: str = Field(
        description="SHA-256 of the keyed row-set fingerprint (also in the holder's audit log)"
    )
    permit: str | None = Field(default=None, description="the data permit the task ran under")
    payload: dict[str, Any]
    disclosure: list[dict[str, str]] = Field(default_factory=list)


class AnalysisRequest(BaseModel):
    """A researcher's request to its own node: run a vetted function over the holders behind transfers."""

    model_config = ConfigDict(extra="forbid")
    function: FunctionName
    transfers: list[str] = Field(min_length=1, description="consumer Analysis-PULL transfers, one per holder")
    cohort: dict[str, Any] | None = None
    variables: dict[str, dict[str, Any]] = Field(default_factory=dict)
    filters: list[Filter] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)
    secure: bool = Field(default=False, description="combine through secure aggregation (>= 3 holders)")
    dp: DPRequest | None = None

    def selection(self) -> Selection:
        return Selection(cohort=self.cohort, variables=self.variables, filters=self.filters)


class HolderStatus(BaseModel):
    holder: str
    dataset: str
    transfer: str
    agreement: str
    state: HolderState = "PENDING"
    rounds: int = 0
    error: str | None = None
    disclosure: list[str] = Field(default_factory=list)


class Provenance(BaseModel):
    holders: list[str] = Field(default_factory=list)
    agreements: list[str] = Field(default_factory=list)
    permits: list[str] = Field(default_factory=list)
    code_version: str = ""
    function_version: str = ""
    disclosure: dict[str, list[str]] = Field(default_factory=dict)
    row_set_digests: dict[str, str] = Field(default_factory=dict)
    secure_aggregation: bool = False
    dp_epsilon: float | None = None


class AnalysisRun(BaseModel):
    id: str
    function: FunctionName
    version: str
    state: RunState = "PENDING"
    created_at: str
    finished_at: str | None = None
    error: str | None = None
    request: AnalysisRequest
    holders: list[HolderStatus] = Field(default_factory=list)
    result: dict[str, Any] | None = None
    provenance: Provenance = Field(default_factory=Provenance)
