"""FastAPI's own OpenTelemetry hooks stay off: OTEL_* settings must not make a node export anywhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from d4h.node.app import build_context, create_app
from d4h.node.nodedir import init_node
from d4h.node.settings import Role


def test_framework_telemetry_is_off_even_when_the_environment_asks_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FASTAPI_OTEL_AUTO_CONFIGURE", "true")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    settings = init_node(tmp_path / "node", name="Test Hospital", roles=[Role.HOLDER], port=8199)
    app = create_app(build_context(settings))
    config = app._telemetry  # the locked FastAPI has native telemetry; its config is what it would act on
    assert not any(config[k] for k in ("tracing", "metrics", "logs", "operation_spans", "auto_configure"))
    assert not app._native_telemetry.enabled()
