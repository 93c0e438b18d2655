"""Synthetic diabetes and oncology cohorts as FHIR R4, deterministic by seed, with per-site differences."""
