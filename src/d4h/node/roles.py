"""Which routers and workers each role mounts; a node composes the modules of all its roles.

Capabilities arrive issue by issue: each adds its routers and processors to the table below.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fastapi import APIRouter

from d4h.node.context import NodeContext
from d4h.node.settings import Role
from d4h.node.worker import Processor

RouterFactory = Callable[[NodeContext], APIRouter]
ProcessorFactory = Callable[[NodeContext], Processor]


@dataclass(frozen=True)
class RoleModule:
    role: Role
    summary: str
    capabilities: tuple[str, ...]
    routers: tuple[RouterFactory, ...] = ()
    processors: tuple[ProcessorFactory, ...] = ()


ROLE_MODULES: dict[Role, RoleModule] = {
    Role.AUTHORITY: RoleModule(
        Role.AUTHORITY,
        "Dataspace governance authority: trust anchor, membership, and Health Data Access Body",
        ("audit", "trust", "membership-issuer", "hdab", "federated-catalogue", "dsp-connector"),
    ),
    Role.HOLDER: RoleModule(
        Role.HOLDER,
        "Data holder (e.g. a hospital): publishes datasets, enforces policies, runs vetted analyses",
        ("audit", "trust", "dsp-connector", "dsp-provider", "data-plane"),
    ),
    Role.USER: RoleModule(
        Role.USER,
        "Data user (e.g. a research institute): discovers data, applies for permits, coordinates analyses",
        ("audit", "trust", "dsp-connector", "dsp-consumer"),
    ),
}


def modules_for(roles: Sequence[Role]) -> list[RoleModule]:
    return [ROLE_MODULES[r] for r in roles]


def capabilities_of(roles: Sequence[Role]) -> list[str]:
    seen: dict[str, None] = {}
    for module in modules_for(roles):
        for cap in module.capabilities:
            seen[cap] = None
    return list(seen)
