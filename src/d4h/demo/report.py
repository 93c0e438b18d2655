"""The demo report: one self-contained HTML file (plots embedded as data URIs, no external requests).

It summarises every step with its timing, what it showed and its figures; plots a step produced (figure values
ending in ``.png`` inside the report directory) are embedded next to it, so the file opens offline anywhere.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, select_autoescape

from d4h.demo.runner import RunSummary

_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>d4h demo report</title>
<style>
body { font: 15px/1.5 system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; padding: 0 1rem; color: #1b1b1b; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.15rem; margin: 1.6rem 0 .3rem; }
.ok { color: #0a6b2d; } .failed { color: #a4161a; } .skipped { color: #666; }
table { border-collapse: collapse; } td, th { padding: .2rem .6rem; border-bottom: 1px solid #ddd; text-align: left; }
pre { background: #f5f5f5; padding: .6rem; overflow-x: auto; font-size: 13px; }
img { max-width: 100%; border: 1px solid #ddd; margin: .4rem 0; }
.lines { margin: .2rem 0 .4rem 1rem; padding: 0; list-style: none; }
</style>
</head>
<body>
<h1>d4h demo report</h1>
<p>{{ status }} in {{ seconds }} s &middot; {{ steps|length }} steps &middot; generated {{ generated }}</p>
<table>
<thead><tr><th>#</th><th>step</th><th>status</th><th>seconds</th></tr></thead>
<tbody>
{% for s in steps %}<tr><td>{{ loop.index }}</td><td><a href="#step-{{ loop.index }}">{{ s.name }}</a></td>
<td class="{{ s.status }}">{{ s.status }}</td><td>{{ "%.2f"|format(s.seconds) }}</td></tr>
{% endfor %}</tbody>
</table>
{% for s in steps %}
<h2 id="step-{{ loop.index }}">{{ loop.index }}. {{ s.name }} <span class="{{ s.status }}">({{ s.status }},
{{ "%.2f"|format(s.seconds) }} s)</span></h2>
{% if s.lines %}<ul class="lines">{% for line in s.lines %}<li>{{ line }}</li>{% endfor %}</ul>{% endif %}
{% if s.error %}<p class="failed">{{ s.error }}</p>{% endif %}
{% for name, uri in s.images %}<figure><img src="{{ uri }}" alt="{{ name }}"><figcaption>{{ name }}</figcaption></figure>{% endfor %}
{% if s.figures %}<details><summary>figures</summary><pre>{{ s.figures }}</pre></details>{% endif %}
{% endfor %}
<h2>Nodes</h2>
<table>{% for key, url in urls.items() %}<tr><td>{{ key }}</td><td>{{ url }}</td></tr>{% endfor %}</table>
</body>
</html>
"""


def _images(figures: Mapping[str, Any], report_dir: Path) -> list[tuple[str, str]]:
    out = []
    for value in figures.values():
        if isinstance(value, str) and value.endswith(".png"):
            path = Path(value)
            if path.is_file() and path.resolve().parent == report_dir.resolve():
                data = base64.b64encode(path.read_bytes()).decode()
                out.append((path.name, f"data:image/png;base64,{data}"))
    return out


def write_report(summary: RunSummary, report_dir: Path) -> Path:
    """Write ``index.html`` (and ``summary.json``) into ``report_dir``; returns the HTML path."""
    report_dir.mkdir(parents=True, exist_ok=True)
    data = summary.as_dict()
    (report_dir / "summary.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
    steps = []
    for step in summary.steps:
        steps.append(
            {
                "name": step.name,
                "status": step.status,
                "seconds": step.seconds,
                "error": step.error,
                "lines": list(step.lines),
                "images": _images(step.figures, report_dir),
                "figures": json.dumps(step.figures, indent=2, default=str) if step.figures else "",
            }
        )
    env = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
    page = env.from_string(_TEMPLATE).render(
        status=summary.status.upper(),
        seconds=f"{summary.seconds:.1f}",
        steps=steps,
        urls=summary.urls,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )
    path = report_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


__all__ = ["write_report"]
