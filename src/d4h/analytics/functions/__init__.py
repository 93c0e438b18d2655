"""Vetted analysis functions: each module holds the holder-side local step and the pure combine step.

``VERSIONS`` maps each function id to the version recorded with every task in the audit log.
"""

from d4h.analytics.functions import (
    cox,
    feasibility,
    glm,
    histogram,
    incidence,
    kaplan_meier,
    kmeans,
    pathways,
    table1,
)

VERSIONS: dict[str, str] = {
    "feasibility": feasibility.VERSION,
    "table1": table1.VERSION,
    "histogram": histogram.VERSION,
    "incidence": incidence.VERSION,
    "kaplan_meier": kaplan_meier.VERSION,
    "cox": cox.VERSION,
    "glm": glm.VERSION,
    "kmeans": kmeans.VERSION,
    "pathways": pathways.VERSION,
}

__all__ = ["VERSIONS"]
