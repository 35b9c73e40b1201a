"""The trace context a refresh request carries, so that the worker's spans of the forced refresh
join the caller's trace (docs/redis-contract.md, the refresh request's ``traceparent``).

OpenTelemetry stays optional: when the application has it (``opentelemetry-api``), the active
span's context is written by the application's own propagators (``opentelemetry.propagate``,
``OTEL_PROPAGATORS``: W3C trace context by default); otherwise there is none, and the library
imports nothing."""

from __future__ import annotations

from typing import Optional

from .contract import is_traceparent

#: The W3C Trace Context header, and the refresh request's field.
TRACEPARENT = "traceparent"


def current_traceparent() -> Optional[str]:
    """The traceparent of OpenTelemetry's active span, ``None`` when OpenTelemetry is not
    installed, no span is active, or the propagators write no valid traceparent (tracing never
    stops a refresh)."""
    try:
        # Imported on each call, not at import time: a refresh request is rare, and an application
        # that sets OpenTelemetry up later (or never) is served alike.
        from opentelemetry import propagate
    except ImportError:
        return None
    carrier: dict[str, str] = {}
    try:
        propagate.inject(carrier)
    except Exception:  # an application's propagator that fails must not stop the refresh
        return None
    value = carrier.get(TRACEPARENT)
    return value if is_traceparent(value) else None
