"""The researcher SDK: connect to your own node, find data, get permits and contracts, run federated analyses.

from d4h.sdk import connect
with connect(node_dir=Path("nodes/institute")) as s:
    agreement = s.negotiate("https://hospital-a.example", "breast-cancer")
    channel = s.open_channel(agreement)
    km = s.analyze("kaplan_meier", [channel], params={"time": "os_time", "event": "os_event"})
    km.to_pandas(); km.save("km.png"); km.provenance; km.suppressed
"""

from d4h.sdk import results as _results
from d4h.sdk.results import (
    CoxResult,
    FeasibilityResult,
    GlmResult,
    HistogramResult,
    HolderStatus,
    IncidenceResult,
    KaplanMeierResult,
    KMeansResult,
    PathwaysResult,
    Provenance,
    Result,
    Table1Result,
    result_from_run,
)
from d4h.sdk.session import (
    AnalysisFailed,
    ProcessTerminated,
    Session,
    analysis_request,
    connect,
    parse_filter,
    parse_param,
)

__all__ = [
    "AnalysisFailed",
    "CoxResult",
    "FeasibilityResult",
    "GlmResult",
    "HistogramResult",
    "HolderStatus",
    "IncidenceResult",
    "KMeansResult",
    "KaplanMeierResult",
    "PathwaysResult",
    "ProcessTerminated",
    "Provenance",
    "Result",
    "Session",
    "Table1Result",
    "analysis_request",
    "connect",
    "parse_filter",
    "parse_param",
    "result_from_run",
]


def _register_capability_results() -> None:
    """Result classes of the use-case functions (oncology, learning, twins) live beside their capability."""
    import importlib

    for name in ("d4h.sdk.oncology_results", "d4h.sdk.learning_results", "d4h.sdk.twin_results"):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        _results.RESULT_TYPES.update(getattr(module, "RESULT_TYPES", {}))


_register_capability_results()
