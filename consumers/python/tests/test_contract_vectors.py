"""Every contract vector (test/contract/vectors.json) through this library, against a real
redis-server: the Node and Go libraries' tests read the same vectors, so the three give the same
answers. Reader vectors run through the threaded and the asyncio reader, response vectors through
requests, httpx.Client and httpx.AsyncClient. Each group of vectors uses a key prefix of its own."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

import pytest
import redis

from conftest import HTTP_KINDS, READER_KINDS, VECTORS, Consumer, as_json, eventually, store_hash, stream_entries, token_fields
from token_lifecycle import (
    AuthChallenge,
    CurrentToken,
    BearerChallenge,
    MalformedStoredTokenError,
    TokenUnavailableError,
    WwwAuthenticateSyntaxError,
    find_bearer_challenge,
    is_invalid_token_challenge,
    parse_www_authenticate,
    refresh_requests_stream,
    token_key,
    token_updated_channel,
)
from token_lifecycle.contract import is_traceparent, parse_announcement, refresh_request_proof, refresh_request_proof_message

STORED = VECTORS["storedTokens"]


def named(vectors: list[dict[str, Any]]) -> list[Any]:
    return [pytest.param(vector, id=vector["name"]) for vector in vectors]


@pytest.mark.parametrize("cache", [False, True], ids=["plain", "cached"])
@pytest.mark.parametrize("kind", READER_KINDS)
@pytest.mark.parametrize("vector", named(STORED["vectors"]))
def test_stored_token(vector: dict[str, Any], kind: str, cache: bool, redis_client: redis.Redis, consumers: Callable[..., Consumer]) -> None:
    prefix = f"contract-py-{kind}-{cache}:"
    key = token_key(prefix, vector["clientId"])
    redis_client.delete(key)
    stored = vector["stored"]
    if stored is not None and stored["type"] == "hash":
        store_hash(redis_client, key, stored["fields"])
    elif stored is not None:
        redis_client.set(key, stored["value"])
    consumer = consumers(kind, prefix=prefix, cache=cache, now=lambda: STORED["now"])

    expect = vector["expect"]
    if "token" in expect:
        assert as_json(consumer.get_token(vector["clientId"])) == expect["token"]
    elif expect["error"] == "token_unavailable":
        with pytest.raises(TokenUnavailableError) as raised:
            consumer.get_token(vector["clientId"])
        assert (raised.value.code, raised.value.client_id, raised.value.key) == ("token_unavailable", vector["clientId"], key)
    else:
        with pytest.raises(MalformedStoredTokenError) as raised:
            consumer.get_token(vector["clientId"])
        assert (raised.value.code, raised.value.key, raised.value.field) == ("malformed_stored_token", key, expect.get("field"))
        assert key in str(raised.value)


@pytest.mark.parametrize("vector", named(VECTORS["wwwAuthenticate"]))
def test_www_authenticate(vector: dict[str, Any]) -> None:
    header = vector["header"]
    if vector["challenges"] == "syntax_error":
        with pytest.raises(WwwAuthenticateSyntaxError) as raised:
            parse_www_authenticate(header)
        assert raised.value.code == "invalid_www_authenticate"
    elif vector["challenges"] is not None:
        assert parse_www_authenticate(header) == [AuthChallenge(c["scheme"], c["params"], c.get("token68")) for c in vector["challenges"]]
    bearer = vector["bearer"]
    expected = None
    if bearer is not None:
        expected = BearerChallenge(bearer.get("realm"), bearer.get("error"), bearer.get("errorDescription"), bearer.get("errorUri"), bearer.get("scope"))
    assert find_bearer_challenge(header) == expected
    assert is_invalid_token_challenge(header) is vector["invalidToken"]


class _VectorApi(BaseHTTPRequestHandler):
    """Answers ``GET /<index>`` with the status and WWW-Authenticate lines of response vector <index>."""

    seen: dict[str, list[str]] = {}

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        vector = VECTORS["responses"][int(self.path[1:])]
        self.seen.setdefault(self.path, []).append(self.headers.get("Authorization", ""))
        self.send_response(vector["status"])
        lines = vector["wwwAuthenticate"]
        for line in [lines] if isinstance(lines, str) else lines or []:
            self.send_header("WWW-Authenticate", line)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def vector_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _VectorApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("kind", HTTP_KINDS)
@pytest.mark.parametrize("index", [pytest.param(index, id=vector["name"]) for index, vector in enumerate(VECTORS["responses"])])
def test_response(index: int, kind: str, vector_api: str, redis_client: redis.Redis, consumers: Callable[..., Consumer]) -> None:
    vector = VECTORS["responses"][index]
    prefix = f"contract-py-http-{kind}:"
    client_id = f"response-{index}"
    fields = token_fields(client_id, 1)
    store_hash(redis_client, token_key(prefix, client_id), fields)
    consumer = consumers(kind, prefix=prefix)
    _VectorApi.seen.pop(f"/{index}", None)

    # No newer token arrives: a refresh is asked for, waited on briefly, and the caller gets the answer.
    answer = consumer.get(f"{vector_api}/{index}", client_id, refresh_timeout=0.3)

    assert answer.status == vector["status"]
    assert _VectorApi.seen[f"/{index}"] == [f"Bearer {fields['access_token']}"]
    requested = [entry[:4] for entry in stream_entries(redis_client, refresh_requests_stream(prefix)) if entry[1] == client_id]
    redis_client.delete(refresh_requests_stream(prefix))
    assert requested == ([["clientId", client_id, "rejectedFingerprint", fields["fingerprint"]]] if vector["refresh"] else [])


TOKEN_UPDATED = VECTORS["tokenUpdated"]


@pytest.mark.parametrize("vector", named(TOKEN_UPDATED["messages"]))
def test_token_updated_payload(vector: dict[str, Any]) -> None:
    announcement = parse_announcement(vector["payload"])
    announces = vector["announces"]
    assert (None if announcement is None else {"clientId": announcement.client_id, "generation": announcement.generation}) == announces
    assert parse_announcement(vector["payload"].encode()) == announcement


@pytest.mark.parametrize("kind", READER_KINDS)
@pytest.mark.parametrize("index", [pytest.param(index, id=vector["name"]) for index, vector in enumerate(TOKEN_UPDATED["messages"])])
def test_token_updated_cache(index: int, kind: str, redis_client: redis.Redis, consumers: Callable[..., Consumer]) -> None:
    vector = TOKEN_UPDATED["messages"][index]
    cached = TOKEN_UPDATED["cached"]
    prefix = f"contract-py-updates-{kind}-{index}:"
    consumer = consumers(kind, prefix=prefix)
    store_hash(redis_client, token_key(prefix, cached["clientId"]), token_fields(cached["clientId"], cached["generation"]))
    assert consumer.get_token(cached["clientId"]).generation == cached["generation"]
    # Behind the reader's back: only an announcement makes it read Redis again.
    store_hash(redis_client, token_key(prefix, cached["clientId"]), token_fields(cached["clientId"], cached["generation"] + 1))
    assert consumer.get_token(cached["clientId"]).generation == cached["generation"]

    redis_client.publish(token_updated_channel(prefix), vector["payload"])
    # Announcements arrive in order on one connection: once this one is seen, so was the vector's.
    store_hash(redis_client, token_key(prefix, "barrier"), token_fields("barrier", 1))
    consumer.get_token("barrier")
    store_hash(redis_client, token_key(prefix, "barrier"), token_fields("barrier", 2))
    redis_client.publish(token_updated_channel(prefix), '{"clientId":"barrier","generation":2}')
    eventually(lambda: consumer.get_token("barrier").generation == 2, 10, "the barrier announcement")

    assert consumer.get_token(cached["clientId"]).generation == cached["generation"] + (1 if vector["dropsCache"] else 0)


@pytest.mark.parametrize("kind", READER_KINDS)
@pytest.mark.parametrize("vector", named(VECTORS["refreshRequests"] + VECTORS["tracedRefreshRequests"]))
def test_refresh_request(vector: dict[str, Any], kind: str, redis_client: redis.Redis, consumers: Callable[..., Consumer]) -> None:
    prefix = f"contract-py-refresh-{kind}:"
    consumer = consumers(kind, prefix=prefix, cache=False)
    request = vector["request"]
    entry_id = consumer.request_refresh(
        vector["clientId"],
        rejected_fingerprint=request.get("rejectedFingerprint"),
        reason=request.get("reason"),
        access_token=vector["accessToken"],
        traceparent=request.get("traceparent"),
    )
    assert stream_entries(redis_client, refresh_requests_stream(prefix), entry_id, entry_id) == [vector["fields"]]


@pytest.mark.parametrize("vector", named(VECTORS["traceparents"]))
def test_traceparent(vector: dict[str, Any]) -> None:
    assert is_traceparent(vector["value"]) is vector["valid"]


@pytest.mark.parametrize("vector", named(VECTORS["refreshRequestProofs"]))
def test_refresh_request_proof(vector: dict[str, Any]) -> None:
    assert refresh_request_proof_message(vector["clientId"], vector.get("rejectedFingerprint")) == vector["message"]
    assert refresh_request_proof(vector["accessToken"], vector["clientId"], vector.get("rejectedFingerprint")) == vector["proof"]


def test_printing_a_token_does_not_show_it() -> None:
    token = CurrentToken("eyJ.secret.sig", "Bearer", 1767225900000, 1767225300000, 3, "0123456789abcdef", "", "orders")
    assert "secret" not in repr(token) and "secret" not in str(token)
    assert "0123456789abcdef" in repr(token)
