"""The ``d4h synth`` generator: a site's synthetic population streamed to FHIR R4 bulk-export NDJSON.

Patient i of a site draws from its own generator seeded with (seed, site, i), so output is deterministic,
independent of batch sizes, and any slice of patients can be regenerated alone.
"""

from __future__ import annotations

import gzip
import random
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal, cast

import orjson

from d4h.errors import UserError
from d4h.holder.synthetic.diabetes import diabetes_patient
from d4h.holder.synthetic.fhir_build import SiteProfile
from d4h.holder.synthetic.oncology import oncology_patient

Cohort = Literal["diabetes", "oncology", "both"]


@dataclass(frozen=True)
class SynthReport:
    site: str
    patients: int
    resources: dict[str, int]
    files: tuple[Path, ...]

    @property
    def total(self) -> int:
        return sum(self.resources.values())


def patient_rng(seed: int, site: str, index: int) -> random.Random:
    # String seeds are hashed with SHA-512 by random.Random: stable across processes and PYTHONHASHSEED.
    return random.Random(f"d4h-synth:{seed}:{site}:{index}")


def generate_patient(
    seed: int, site: SiteProfile, index: int, cohort: Cohort = "both"
) -> list[dict[str, Any]]:
    """All resources of patient ``index`` at ``site`` (Patient first).

    Resources share immutable fragments (codings, categories, references): copy before mutating one.
    """
    rng = patient_rng(seed, site.name, index)
    if cohort == "diabetes" or (cohort == "both" and rng.random() < site.diabetes_share):
        return diabetes_patient(rng, site)
    return oncology_patient(rng, site)


def iter_patients(
    seed: int, site: SiteProfile, patients: int, cohort: Cohort = "both"
) -> Iterator[list[dict[str, Any]]]:
    for index in range(patients):
        yield generate_patient(seed, site, index, cohort)


def synthesize(
    out_dir: Path,
    *,
    patients: int,
    seed: int = 1,
    site: str = "site-a",
    cohort: Cohort = "both",
    compress: bool = False,
    progress: Callable[[int], None] | None = None,
) -> SynthReport:
    """Write ``patients`` synthetic patients to ``out_dir/<Type>.ndjson[.gz]``, one resource per line."""
    if patients < 0:
        raise UserError("number of patients must not be negative")
    if cohort not in ("diabetes", "oncology", "both"):
        raise UserError(f"unknown cohort {cohort!r}; use diabetes, oncology or both")
    profile = SiteProfile.named(site)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    paths: dict[str, Path] = {}
    suffix = ".ndjson.gz" if compress else ".ndjson"
    dumps = orjson.dumps
    newline = orjson.OPT_APPEND_NEWLINE
    with ExitStack() as stack:
        handles: dict[str, IO[bytes]] = {}

        def handle(kind: str) -> IO[bytes]:
            fh = handles.get(kind)
            if fh is None:
                path = out_dir / f"{kind}{suffix}"
                paths[kind] = path
                # Closed by the ExitStack: one handle per resource type stays open while streaming. A 1 MiB
                # buffer turns a write system call per ~15 resources into one per ~2,000.
                if compress:
                    raw = cast(IO[bytes], gzip.open(path, "wb", compresslevel=3))  # noqa: SIM115
                else:
                    raw = path.open("wb", buffering=1 << 20)
                fh = handles[kind] = stack.enter_context(raw)
            return fh

        for index, resources in enumerate(iter_patients(seed, profile, patients, cohort), start=1):
            for resource in resources:
                kind = resource["resourceType"]
                (handles.get(kind) or handle(kind)).write(dumps(resource, option=newline))
                counts[kind] = counts.get(kind, 0) + 1
            if progress is not None and (index % 500 == 0 or index == patients):
                progress(index)
    return SynthReport(site, patients, counts, tuple(paths[k] for k in sorted(paths)))
