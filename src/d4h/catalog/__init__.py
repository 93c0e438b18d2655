"""Dataset catalogue metadata: HealthDCAT-AP Release 8 descriptions as RDF, JSON-LD and Turtle."""

from d4h.catalog.healthdcat import (
    CONTEXT,
    EHDS_ELI,
    NON_PUBLIC,
    Agent,
    Column,
    DatasetDescription,
    Distribution,
    catalogue_graph,
    concept,
    dataset_graph,
    from_jsonld,
    to_jsonld,
    to_turtle,
)

__all__ = [
    "CONTEXT",
    "EHDS_ELI",
    "NON_PUBLIC",
    "Agent",
    "Column",
    "DatasetDescription",
    "Distribution",
    "catalogue_graph",
    "concept",
    "dataset_graph",
    "from_jsonld",
    "to_jsonld",
    "to_turtle",
]
