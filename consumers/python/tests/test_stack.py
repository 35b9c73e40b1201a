"""The library against the real stack (test/support/consumer-stack.ts): the worker process on a
Temporal dev server keeps the tokens of clients registered here fresh in a real redis-server, from
the IAM emulator, whose resource API answers 401 invalid_token to revoked tokens. Refresh requests
go through the refresh-requests stream and the worker's consumer, as in production. The scenarios
of the Node library's test/integration/consumer-library.test.ts, through requests, httpx.Client
and httpx.AsyncClient."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

import pytest
import redis

from conftest import HTTP_KINDS, READER_KINDS, Consumer, Control, as_json, eventually, stack_variable
from token_lifecycle import (
    RedisUnavailableError,
    RefreshRequestError,
    TokenReader,
    TokenReaderClosedError,
    TokenUnavailableError,
    TokenWaitTimeoutError,
    refresh_requests_stream,
    token_key,
)
from token_lifecycle.contract import unix_ms


def stack_consumer(consumers: Callable[..., Consumer], kind: str, **options: Any) -> Consumer:
    return consumers(kind, prefix=stack_variable("TOKEN_STACK_PREFIX"), **options)


def resource_body(client_id: str) -> str:
    return json.dumps({"ok": True, "clientId": client_id}, separators=(",", ":"))


@pytest.mark.parametrize("kind", HTTP_KINDS)
def test_a_revoked_token_is_replaced_once_and_a_refusal_inside_the_minimum_interval_reaches_the_caller(
    kind: str, control: Control, consumers: Callable[..., Consumer]
) -> None:
    resource = stack_variable("TOKEN_STACK_RESOURCE_URL")
    consumer = stack_consumer(consumers, kind)
    client_id = control.register(6_000)
    first = consumer.wait_for_token(client_id, 0, 60)
    before = consumer.get(resource, client_id)
    assert (before.status, before.text) == (200, resource_body(client_id))
    assert control.outcomes(client_id) == ["ok"]

    # Revoked within the minimum interval of the first token: the workflow serves the refresh when
    # the interval is over, well within the refresh timeout.
    control.revoke(first)
    assert consumer.get(resource, client_id, refresh_timeout=30).text == resource_body(client_id)
    second = consumer.get_token(client_id)
    requests_after = control.resource_requests(client_id)[1:]
    assert [request["outcome"] for request in requests_after] == ["invalid_token", "ok"]
    assert requests_after[1]["fingerprint"] == second.fingerprint
    assert (second.generation, control.issued(client_id)) == (2, 2)
    assert second.fingerprint != first.fingerprint
    reason = f"401 invalid_token from {urlsplit(resource).netloc}"
    assert control.force_refresh_signals(client_id) == [{"rejectedFingerprint": first.fingerprint, "reason": reason}]

    # Revoked again inside the minimum interval that began with the second token: no newer token
    # within 1.5 s, so the caller gets the 401, after one request to the API.
    control.revoke(second)
    refused = consumer.get(resource, client_id, refresh_timeout=1.5)
    assert refused.status == 401 and 'error="invalid_token"' in refused.www_authenticate
    assert control.outcomes(client_id)[3:] == ["invalid_token"]
    assert control.issued(client_id) == 2
    assert [signal["rejectedFingerprint"] for signal in control.force_refresh_signals(client_id)] == [first.fingerprint, second.fingerprint]

    # The deferred request is served once, when the interval is over: one token, not a loop.
    assert consumer.wait_for_token(client_id, 2, 60).generation == 3
    time.sleep(1)
    assert (control.issued(client_id), len(control.resource_requests(client_id))) == (3, 4)


@pytest.mark.parametrize("kind", HTTP_KINDS)
def test_fifty_concurrent_requests_refused_with_one_token_cause_one_refresh_request_and_one_iam_request(
    kind: str, control: Control, consumers: Callable[..., Consumer]
) -> None:
    resource = stack_variable("TOKEN_STACK_RESOURCE_URL")
    consumer = stack_consumer(consumers, kind)
    # Revoked at once, inside the minimum interval: the refresh waits for the interval's end, so
    # every caller is refused with the first token, however slowly the callers start.
    client_id = control.register(5_000)
    first = consumer.wait_for_token(client_id, 0, 60)

    control.revoke(first)
    answers = consumer.get_many(resource, client_id, 50)

    assert [answer.status for answer in answers] == [200] * 50
    assert control.issued(client_id) == 2
    signals = control.force_refresh_signals(client_id)
    assert [signal["rejectedFingerprint"] for signal in signals] == [first.fingerprint]
    assert Counter(control.outcomes(client_id)) == {"invalid_token": 50, "ok": 50}


class _Refusing(BaseHTTPRequestHandler):
    """An API whose 401s carry the challenge ``CHALLENGES[<path index>]``; records what it was sent."""

    CHALLENGES = ['Bearer realm="other"', 'Bearer realm="other", error="invalid_request"', 'Basic realm="x"']
    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.seen.append(self.headers.get("Authorization", ""))
        self.send_response(401)
        self.send_header("WWW-Authenticate", self.CHALLENGES[int(self.path[1:])])
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


class _Accepting(BaseHTTPRequestHandler):
    """An API that accepts anything; records what it was sent."""

    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        self.seen.append(self.headers.get("Authorization", ""))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


def serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    handler.seen = []  # type: ignore[attr-defined]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def refusing_api() -> Iterator[str]:
    yield from serve(_Refusing)


@pytest.fixture
def accepting_api() -> Iterator[str]:
    yield from serve(_Accepting)


@pytest.mark.parametrize("kind", HTTP_KINDS)
def test_other_refusals_reach_the_caller_without_a_refresh(kind: str, control: Control, consumers: Callable[..., Consumer], refusing_api: str) -> None:
    consumer = stack_consumer(consumers, kind)
    client_id = control.register(0)
    token = consumer.wait_for_token(client_id, 0, 60)

    forbidden = consumer.get(stack_variable("TOKEN_STACK_ADMIN_RESOURCE_URL"), client_id)
    assert forbidden.status == 403 and 'error="insufficient_scope"' in forbidden.www_authenticate
    assert control.outcomes(client_id) == ["insufficient_scope"]

    # An API whose 401s carry other challenges: each request must be sent exactly once.
    for index in range(len(_Refusing.CHALLENGES)):
        assert consumer.get(f"{refusing_api}/{index}", client_id).status == 401
    assert _Refusing.seen == [f"Bearer {token.access_token}"] * len(_Refusing.CHALLENGES)
    assert control.force_refresh_signals(client_id) == []
    assert control.issued(client_id) == 1


@pytest.mark.parametrize("kind", HTTP_KINDS)
def test_a_token_whose_key_expired_is_never_sent(kind: str, control: Control, consumers: Callable[..., Consumer], accepting_api: str, redis_client: redis.Redis) -> None:
    consumer = stack_consumer(consumers, kind)
    client_id = f"py-short-lived-{kind}"
    short = control.store_token(client_id, 1, 3_000)
    assert consumer.get(accepting_api, client_id).status == 200
    assert _Accepting.seen == [f"Bearer {short['accessToken']}"]

    # The cache holds the token now; nothing announces its expiry.
    time.sleep(max(0.0, (short["expiresAt"] - unix_ms()) / 1000) + 0.05)
    with pytest.raises(TokenUnavailableError):
        consumer.get(accepting_api, client_id)
    assert len(_Accepting.seen) == 1
    # The worker's write script set the key to expire with the token.
    assert redis_client.exists(token_key(consumer.prefix, client_id)) == 0

    # A reader whose clock is ahead of Redis's sees the token as expired while the key still exists.
    ahead_id = f"py-clock-ahead-{kind}"
    control.store_token(ahead_id, 1, 60_000)
    ahead = stack_consumer(consumers, kind, now=lambda: unix_ms() + 120_000)
    with pytest.raises(TokenUnavailableError) as raised:
        ahead.get(accepting_api, ahead_id)
    assert raised.value.client_id == ahead_id
    assert len(_Accepting.seen) == 1


@pytest.mark.parametrize("kind", READER_KINDS)
def test_a_token_written_by_the_worker_is_read_as_the_node_library_reads_it(kind: str, control: Control, consumers: Callable[..., Consumer]) -> None:
    consumer = stack_consumer(consumers, kind)
    client_id = control.register(0)
    token = consumer.wait_for_token(client_id, 0, 60)

    node = control.node_token(client_id)

    assert as_json(token) == node
    # Same types too: == would take 1.0 for 1.
    assert {name: type(value) for name, value in as_json(token).items()} == {name: type(value) for name, value in node.items()}
    assert (token.token_type, token.generation, token.scope) == ("Bearer", 1, "")
    assert token.expires_at > token.obtained_at


@pytest.mark.parametrize("kind", READER_KINDS)
def test_wait_for_token_resolves_on_a_newer_generation_and_times_out_with_a_typed_error(kind: str, control: Control, consumers: Callable[..., Consumer]) -> None:
    consumer = stack_consumer(consumers, kind)
    client_id = f"py-waited-for-{kind}"
    control.store_token(client_id, 4, 60_000)
    assert consumer.wait_for_token(client_id, 3, 5).generation == 4

    fifth: dict[str, Any] = {}
    writer = threading.Timer(0.1, lambda: fifth.update(control.store_token(client_id, 5, 60_000)))
    writer.start()
    waited = consumer.wait_for_token(client_id, 4, 20)
    writer.join()
    assert (waited.generation, waited.fingerprint) == (5, fifth["fingerprint"])

    with pytest.raises(TokenWaitTimeoutError) as raised:
        consumer.wait_for_token(client_id, 5, 0.3)
    assert (raised.value.code, raised.value.client_id, raised.value.newer_than) == ("token_wait_timeout", client_id, 5)


def test_closing_a_reader_ends_its_waits(control: Control, redis_client: redis.Redis) -> None:
    reader = TokenReader(redis_client, prefix=stack_variable("TOKEN_STACK_PREFIX"))
    control.store_token("py-closed", 1, 60_000)
    threading.Timer(0.1, reader.close).start()
    with pytest.raises(TokenReaderClosedError) as raised:
        reader.wait_for_token("py-closed", newer_than=1, timeout=20)
    assert raised.value.code == "token_reader_closed"
    with pytest.raises(TokenReaderClosedError):
        reader.get_token("py-closed")


@pytest.mark.parametrize("kind", READER_KINDS)
def test_the_cache_serves_an_announced_generation_and_nothing_else_changes_it(kind: str, control: Control, consumers: Callable[..., Consumer], redis_client: redis.Redis) -> None:
    consumer = stack_consumer(consumers, kind)
    client_id = f"py-cache-{kind}"
    first = control.store_token(client_id, 1, 60_000)
    assert consumer.get_token(client_id).access_token == first["accessToken"]
    # Changed behind the reader's back (no announcement): still served from memory.
    redis_client.hset(token_key(consumer.prefix, client_id), "access_token", "changed-without-announcement")
    assert consumer.get_token(client_id).access_token == first["accessToken"]

    second = control.store_token(client_id, 2, 60_000)
    eventually(lambda: consumer.get_token(client_id).generation == 2, 10, "the announced generation")
    assert as_json(consumer.get_token(client_id)) == second


@pytest.mark.parametrize("cache", [False, True], ids=["plain", "cached"])
@pytest.mark.parametrize("kind", READER_KINDS)
def test_no_token_and_no_redis_are_typed_errors(kind: str, cache: bool, consumers: Callable[..., Consumer], monkeypatch: pytest.MonkeyPatch) -> None:
    consumer = stack_consumer(consumers, kind, cache=cache)
    with pytest.raises(TokenUnavailableError) as unavailable:
        consumer.get_token("never-stored")
    assert (unavailable.value.code, unavailable.value.key) == ("token_unavailable", token_key(consumer.prefix, "never-stored"))

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("TOKEN_STACK_REDIS_URL", f"redis://127.0.0.1:{port}")
    away = consumers(kind, prefix="py-away:", cache=cache)
    with pytest.raises(RedisUnavailableError) as raised:
        away.get_token("away")
    assert (raised.value.code, raised.value.client_id) == ("redis_unavailable", "away")
    with pytest.raises(RedisUnavailableError):
        away.wait_for_token("away", 0, 1)
    # With a token the XADD fails; without one, reading the token to prove the request with.
    with pytest.raises(RefreshRequestError) as refused:
        away.request_refresh("away", access_token="token-of-away")
    assert (refused.value.code, refused.value.problem) == ("refresh_request_failed", None)
    with pytest.raises(RefreshRequestError) as refused:
        away.request_refresh("away")
    assert refused.value.code == "refresh_request_failed" and refused.value.problem is not None


def test_request_refresh_keeps_the_stream_bounded(redis_client: redis.Redis) -> None:
    # A prefix of its own: the stack's worker consumes <stack prefix>refresh-requests.
    with TokenReader(redis_client, prefix="py-bounded:", refresh_requests_max_len=10) as reader:
        for index in range(300):
            reader.request_refresh(f"bounded-{index}", access_token="token-of-bounded")
    # MAXLEN ~ trims whole stream nodes (100 entries each by default), so about 10 to 110 remain.
    assert redis_client.xlen(refresh_requests_stream("py-bounded:")) <= 110


@pytest.mark.parametrize("example", ["requests_example.py", "httpx_async_example.py"])
def test_the_readme_examples_call_the_api_with_the_workers_token(example: str, control: Control, consumers: Callable[..., Consumer]) -> None:
    client_id = control.register(0)
    stack_consumer(consumers, "sync").wait_for_token(client_id, 0, 60)
    examples = Path(__file__).resolve().parents[1] / "examples"
    environment = {
        **os.environ,
        "PYTHONPATH": str(examples.parent / "src"),
        "REDIS_URL": stack_variable("TOKEN_STACK_REDIS_URL"),
        "API_URL": stack_variable("TOKEN_STACK_RESOURCE_URL"),
        "CLIENT_ID": client_id,
    }
    finished = subprocess.run([sys.executable, str(examples / example)], env=environment, capture_output=True, text=True, timeout=120, check=False)
    assert (finished.returncode, finished.stderr) == (0, "")
    assert finished.stdout.strip() == str({"ok": True, "clientId": client_id})


@pytest.mark.parametrize("kind", HTTP_KINDS)
def test_a_consumer_user_reads_its_own_tokens_and_no_other_key(kind: str, control: Control, consumers: Callable[..., Consumer]) -> None:
    """As the Redis user `tokenctl grant … --refresh` makes for a service: the library reads, waits,
    asks for a refresh and recovers with that user's rights, HGET and HGETALL work on its own key,
    and another client's key answers NOPERM."""
    prefix = stack_variable("TOKEN_STACK_PREFIX")
    consumer = stack_consumer(consumers, kind, url_variable="TOKEN_STACK_CONSUMER_REDIS_URL")
    client_id = control.register(0)
    first = consumer.wait_for_token(client_id, 0, 60)

    granted = redis.Redis.from_url(stack_variable("TOKEN_STACK_CONSUMER_REDIS_URL"), decode_responses=True)
    try:
        assert granted.hget(token_key(prefix, client_id), "fingerprint") == first.fingerprint
        assert granted.hgetall(token_key(prefix, client_id))["access_token"] == first.access_token

        control.revoke(first)
        answer = consumer.get(stack_variable("TOKEN_STACK_RESOURCE_URL"), client_id)
        assert (answer.status, answer.text) == (200, resource_body(client_id))
        assert control.issued(client_id) == 2

        outsider = f"not-granted-python-{kind}"
        control.store_token(outsider, 1, 60_000)
        with pytest.raises(RedisUnavailableError) as refused:
            consumer.get_token(outsider)
        assert isinstance(refused.value.__cause__, redis.exceptions.NoPermissionError)
        for read in (lambda: granted.hget(token_key(prefix, outsider), "access_token"), lambda: granted.hgetall(token_key(prefix, outsider))):
            with pytest.raises(redis.exceptions.NoPermissionError):
                read()
    finally:
        granted.close()

