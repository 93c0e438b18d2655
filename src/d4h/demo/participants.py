"""The demo's participants: the national HDAB/authority, two hospitals and a research institute."""

from __future__ import annotations

from dataclasses import dataclass

from d4h.node.settings import Role


@dataclass(frozen=True)
class DemoParticipant:
    key: str  # short handle used in the scenario and in directory names
    name: str
    roles: tuple[Role, ...]
    registration_number: str


PARTICIPANTS: tuple[DemoParticipant, ...] = (
    DemoParticipant("hdab", "National Health Data Service (HDAB)", (Role.AUTHORITY,), "0000000-1"),
    DemoParticipant("hospital-north", "University Hospital North", (Role.HOLDER,), "1000001-1"),
    DemoParticipant("hospital-south", "University Hospital South", (Role.HOLDER,), "1000002-2"),
    DemoParticipant("institute", "Institute for Diabetes and Cancer Research", (Role.USER,), "2000001-3"),
)
