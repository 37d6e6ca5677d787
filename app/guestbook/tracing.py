"""OpenTelemetry traces, opt-in through the standard OTEL_* variables: Flask and SQLAlchemy spans.

On when ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (and
``OTEL_SDK_DISABLED`` is not true); everything else (service name, headers, batch delays, sampler)
comes from the other OTEL_* variables as the SDK reads them. Spans go out over OTLP/HTTP.

Set up in create_app, which Gunicorn runs in each worker after the fork (the app is never
preloaded; the master only imports modules), so the batch exporter's thread and its connection
belong to the worker, as OpenTelemetry's Gunicorn guidance requires. The tracer provider is
process-wide: the first app of a process installs it, later ones reuse it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from flask import Flask
from sqlalchemy import Engine

from .extensions import db

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


def enabled(environ: Mapping[str, str]) -> bool:
    """Whether the environment asks for traces (an OTLP endpoint, SDK not disabled)."""
    disabled = environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
    return not disabled and any(environ.get(name, "").strip() for name in ENDPOINT_VARIABLES)


def _provider() -> object:
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        return current
    # "guestbook" unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES names the service.
    named = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    provider = TracerProvider(resource=Resource.create({} if named else {SERVICE_NAME: "guestbook"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider


def configure_tracing(app: Flask) -> None:
    """Instrument this app (requests) and its engine (SQL) when TRACING is on; else nothing."""
    if not app.config["TRACING"]:
        return
    from opentelemetry.instrumentation.flask import FlaskInstrumentor
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    provider = _provider()
    FlaskInstrumentor().instrument_app(app, tracer_provider=provider)
    with app.app_context():
        engine = db.engine
    if isinstance(engine, Engine):
        # The instrumentation declares SQLAlchemy < 2.1 and would skip 2.1 silently; its engine
        # events are unchanged in 2.1, and tests/app/test_app_tracing.py checks the SQL spans.
        SQLAlchemyInstrumentor().instrument(engine=engine, tracer_provider=provider, skip_dep_check=True)
