"""Stand-in for ``opentelemetry.propagate`` (see ``__init__``): ``inject`` with the real one's
signature, writing what the default propagators (W3C trace context and baggage) write for the
"active span" into a dict carrier. The active span is what a test sets in ``active_traceparent``,
a context variable as OpenTelemetry's context is; ``failure`` makes ``inject`` raise, as a broken
propagator of an application would."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any, Optional

active_traceparent: ContextVar[Optional[str]] = ContextVar("active_traceparent", default=None)
failure: ContextVar[Optional[Exception]] = ContextVar("failure", default=None)


def inject(carrier: Any, context: Any = None, setter: Any = None) -> None:
    error = failure.get()
    if error is not None:
        raise error
    traceparent = active_traceparent.get()
    if traceparent is not None:
        carrier["traceparent"] = traceparent
        carrier["baggage"] = "tenant=acme"
