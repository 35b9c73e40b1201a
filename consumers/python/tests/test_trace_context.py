"""Trace context on refresh requests (docs/redis-contract.md, the refresh request's ``traceparent``),
against the stack's real Redis: an explicit traceparent, the refused request's ``traceparent``
header, and the active OpenTelemetry span's. Which values are valid, and the entries for explicit
ones, are contract vectors (test_contract_vectors.py).

The OpenTelemetry path is tested with a stand-in for ``opentelemetry.propagate`` (tests/stand_ins:
Debian has no python3-opentelemetry and PyPI cannot be reached here), put on ``sys.path`` by the
``opentelemetry`` fixture only: the library imports the real module name through the real import
machinery, and the stand-in writes what OpenTelemetry's default propagators write. Everywhere else
``opentelemetry`` is not importable, as on a machine without it."""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator

import pytest
import redis
import requests

from conftest import HTTP_KINDS, READER_KINDS, Consumer, store_hash, stream_entries, token_fields
from token_lifecycle import RequestsBearerAuth, TokenReader, refresh_requests_stream, token_key
from token_lifecycle.contract import refresh_request_proof

SAMPLED = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
UNSAMPLED = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
CLIENT_ID = "orders"
ACCESS_TOKEN = "token-orders-1"


def entry_fields(traceparent: str | None = None) -> list[str]:
    """The entry a request of CLIENT_ID proven with ACCESS_TOKEN makes, carrying ``traceparent``."""
    traced = ["traceparent", traceparent] if traceparent is not None else []
    return ["clientId", CLIENT_ID, *traced, "proof", refresh_request_proof(ACCESS_TOKEN, CLIENT_ID, None)]


def request_refresh(consumer: Consumer, redis_client: redis.Redis, **request: Any) -> list[list[str]]:
    entry_id = consumer.request_refresh(CLIENT_ID, access_token=ACCESS_TOKEN, **request)
    return stream_entries(redis_client, refresh_requests_stream(consumer.prefix), entry_id, entry_id)


@pytest.fixture
def no_opentelemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    """``import opentelemetry`` fails, whatever is installed."""
    monkeypatch.setitem(sys.modules, "opentelemetry", None)


@pytest.fixture
def opentelemetry(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """The stand-in ``opentelemetry`` importable; yields its ``propagate``, whose
    ``active_traceparent`` the test sets."""
    for name in ("opentelemetry", "opentelemetry.propagate"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.syspath_prepend(str(Path(__file__).parent / "stand_ins"))
    from opentelemetry import propagate

    assert propagate.__file__.startswith(str(Path(__file__).parent / "stand_ins")), "a real opentelemetry is installed: test it instead"
    yield propagate
    for name in ("opentelemetry", "opentelemetry.propagate"):
        sys.modules.pop(name, None)


@pytest.mark.parametrize("kind", READER_KINDS)
def test_an_explicit_traceparent_is_carried_without_opentelemetry(
    kind: str, no_opentelemetry: None, redis_client: redis.Redis, consumers: Callable[..., Consumer]
) -> None:
    consumer = consumers(kind, prefix=f"traceparent-py-explicit-{kind}:", cache=False)

    assert request_refresh(consumer, redis_client, traceparent=SAMPLED) == [entry_fields(SAMPLED)]
    assert request_refresh(consumer, redis_client) == [entry_fields()]


@pytest.mark.parametrize("kind", READER_KINDS)
def test_the_active_opentelemetry_spans_traceparent_is_carried(
    kind: str, opentelemetry: ModuleType, redis_client: redis.Redis, consumers: Callable[..., Consumer]
) -> None:
    # The asyncio kind runs the request on its loop's thread, in a copy of this thread's context
    # (asyncio.run_coroutine_threadsafe), as an application handing work to a loop does.
    consumer = consumers(kind, prefix=f"traceparent-py-otel-{kind}:", cache=False)
    assert request_refresh(consumer, redis_client) == [entry_fields()], "no span is active yet"

    active = opentelemetry.active_traceparent.set(SAMPLED)
    try:
        assert request_refresh(consumer, redis_client) == [entry_fields(SAMPLED)]
        assert request_refresh(consumer, redis_client, traceparent=UNSAMPLED) == [entry_fields(UNSAMPLED)], "an explicit one wins"
        assert request_refresh(consumer, redis_client, traceparent=SAMPLED.upper()) == [entry_fields()], "a malformed explicit one is not sent"
    finally:
        opentelemetry.active_traceparent.reset(active)


@pytest.mark.parametrize("kind", READER_KINDS)
def test_what_opentelemetry_gives_never_stops_a_refresh(
    kind: str, opentelemetry: ModuleType, redis_client: redis.Redis, consumers: Callable[..., Consumer]
) -> None:
    consumer = consumers(kind, prefix=f"traceparent-py-otel-broken-{kind}:", cache=False)

    invalid = opentelemetry.active_traceparent.set("00-not-a-trace")
    try:
        assert request_refresh(consumer, redis_client) == [entry_fields()]
    finally:
        opentelemetry.active_traceparent.reset(invalid)
    failing = opentelemetry.failure.set(RuntimeError("a broken propagator"))
    try:
        assert request_refresh(consumer, redis_client) == [entry_fields()]
    finally:
        opentelemetry.failure.reset(failing)


class _RefusingApi(BaseHTTPRequestHandler):
    """Refuses every token: 401 invalid_token (RFC 6750 §3.1)."""

    def do_GET(self) -> None:
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Bearer error="invalid_token"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def refusing_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RefusingApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/resource"
    server.shutdown()
    server.server_close()


def refresh_requests(redis_client: redis.Redis, prefix: str) -> list[list[str]]:
    return stream_entries(redis_client, refresh_requests_stream(prefix))


def store_token(redis_client: redis.Redis, prefix: str) -> dict[str, str]:
    """A fresh token of CLIENT_ID under ``prefix``, and no refresh request yet."""
    fields = token_fields(CLIENT_ID, 1)
    store_hash(redis_client, token_key(prefix, CLIENT_ID), fields)
    redis_client.delete(refresh_requests_stream(prefix))
    return fields


@pytest.mark.parametrize("kind", HTTP_KINDS)
def test_a_refused_requests_traceparent_header_is_carried(
    kind: str, no_opentelemetry: None, refusing_api: str, redis_client: redis.Redis, consumers: Callable[..., Consumer]
) -> None:
    # What an application that propagates trace context by hand sends.
    prefix = f"traceparent-py-http-{kind}:"
    fields = store_token(redis_client, prefix)
    consumer = consumers(kind, prefix=prefix)

    # No newer token arrives: the refresh is asked for, waited on briefly, and the 401 returned.
    assert consumer.get(refusing_api, CLIENT_ID, refresh_timeout=0.2, headers={"traceparent": SAMPLED}).status == 401

    (entry,) = refresh_requests(redis_client, prefix)
    assert entry[:4] == ["clientId", CLIENT_ID, "rejectedFingerprint", fields["fingerprint"]]
    assert entry[-4:-2] == ["traceparent", SAMPLED]


@pytest.mark.parametrize("header", ["not-a-traceparent", None])
def test_a_refused_request_without_a_valid_traceparent_header_carries_the_active_spans(
    header: str | None, opentelemetry: ModuleType, refusing_api: str, redis_client: redis.Redis
) -> None:
    prefix = f"traceparent-py-http-otel-{header}:"
    fields = store_token(redis_client, prefix)
    reader = TokenReader(redis_client, prefix=prefix)
    active = opentelemetry.active_traceparent.set(SAMPLED)
    try:
        headers = {} if header is None else {"traceparent": header}
        response = requests.get(refusing_api, auth=RequestsBearerAuth(reader, CLIENT_ID, refresh_timeout=0.2), headers=headers, timeout=30)
    finally:
        opentelemetry.active_traceparent.reset(active)
        reader.close()

    assert response.status_code == 401
    (entry,) = refresh_requests(redis_client, prefix)
    assert entry[:4] == ["clientId", CLIENT_ID, "rejectedFingerprint", fields["fingerprint"]]
    assert entry[-4:-2] == ["traceparent", SAMPLED]
