"""Demo step of the oncology use case: a tumour board asks both hospitals for 'patients like this'.

The question (breast cancer, stage II-III, HER2-positive, HR-positive) runs as ``similar_patients`` over the
hospitals' ``oncology_lines`` extract. Two hospitals cannot use a secure sum (it needs >= 3), so each hospital
releases its own disclosure-controlled answer; the plot shows the released Kaplan-Meier curves per regimen.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from d4h.demo.analysis_steps import _names, _refusal, _report_dir, _session
from d4h.demo.scenario import DemoContext
from d4h.sdk.oncology_results import SimilarPatientsResult
from d4h.sdk.session import AnalysisFailed

TUMOUR_BOARD_QUERY = {
    "tumour_type": "breast",
    "stages": ["II", "III"],
    "biomarkers": {"her2": True, "er": True},
    "line": 1,
}
# The extract dataset kind, if the demo opens one apart from the OMOP oncology dataset.
CHANNEL_KINDS = ("oncology_lines", "oncology")


def tumour_board(ctx: DemoContext) -> dict[str, Any]:
    """Tumour board: patients like this (breast, stage II-III, HER2+/HR+) and OS per first-line regimen."""
    kind = next(k for k in CHANNEL_KINDS if k in ctx.analysis_channels)
    with _session(ctx) as session:
        try:
            run = session.analyze("similar_patients", ctx.analysis_channels[kind], params=TUMOUR_BOARD_QUERY)
        except AnalysisFailed as exc:
            return _refusal(ctx, "patients like this", exc)
    result = SimilarPatientsResult(run.run)
    data = result.run["result"]
    total = data.get("n_patients")
    ctx.say(f"patients like this (breast II-III, HER2+, HR+): {'suppressed' if total is None else total}")
    frame = result.to_pandas()
    names = _names(ctx)
    frame["source"] = frame["source"].map(lambda s: names.get(s, s))
    for source, regimen, n, median in frame[["source", "regimen", "n", "median_days"]].itertuples(
        index=False
    ):
        count = "suppressed" if pd.isna(n) else str(int(n))
        days = "not reached or withheld" if pd.isna(median) else f"{float(median):.0f} days"
        ctx.say(f"  {source}: first line {regimen}: n {count}, median OS {days}")
    path = result.save(_report_dir(ctx) / "tumour_board_km_per_regimen.png")
    return {"n_patients": total, "regimens": len(frame), "km_plot": str(path), "mode": data.get("mode")}
