"""The Redis contract (docs/redis-contract.md) as code: names, the stored token and how to read
it, the token-updated announcement, and the refresh-request entry. No I/O: the sync and asyncio
readers share it, and test/contract/vectors.json holds it to the Node and Go libraries."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence, TypeGuard, Union

from .errors import MalformedStoredTokenError

#: The prefix of every Redis name when the worker's ``TOKEN_KEY_PREFIX`` is not set.
DEFAULT_PREFIX = "oauth:"

#: The length producers cap ``<prefix>refresh-requests`` at (``XADD … MAXLEN ~ n``), as the worker expects.
DEFAULT_REFRESH_REQUESTS_MAX_LEN = 10_000

#: 2^53 - 1: the largest integer every consumer language (JavaScript's numbers included) holds exactly.
MAX_EXACT_INTEGER = 2**53 - 1

#: The hash fields a reader reads, in the order :func:`parse_stored_token` expects them.
STORED_FIELDS = ("access_token", "client_id", "token_type", "scope", "generation", "obtained_at", "expires_at", "fingerprint")

_DECIMAL_DIGITS = re.compile(r"[0-9]+")

RedisValue = Union[bytes, str, None]


def token_key(prefix: str, client_id: str) -> str:
    """The hash that holds the current token of ``client_id``: ``<prefix>token:<client_id>``."""
    return f"{prefix}token:{client_id}"


def token_updated_channel(prefix: str) -> str:
    """The channel on which the worker announces every token it stores."""
    return f"{prefix}token-updated"


def refresh_requests_stream(prefix: str) -> str:
    """The stream on which services ask the worker for a new token."""
    return f"{prefix}refresh-requests"


def unix_ms() -> int:
    """The system clock in Unix milliseconds, the unit of every time in the contract."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class CurrentToken:
    """A client's current token, as the worker stored it. Times are Unix milliseconds."""

    #: What to send in ``Authorization: Bearer <access_token>`` (RFC 6750 §2.1). Never log it:
    #: name a token by its fingerprint (it is left out of ``repr``).
    access_token: str = field(repr=False)
    #: The IAM's ``token_type``, normally ``Bearer`` (RFC 6749 §7.1).
    token_type: str
    #: The token is unusable from this instant; a reader never returns it from then on.
    expires_at: int
    #: When the worker received the token from the IAM.
    obtained_at: int
    #: Increases with every token the worker obtains for the client: higher is newer.
    generation: int
    #: First 16 hex digits of SHA-256 of the token.
    fingerprint: str
    #: Space-delimited scope the IAM granted (RFC 6749 §3.3); may be empty.
    scope: str
    client_id: str


def parse_stored_token(key: str, values: Sequence[RedisValue], now_ms: int) -> Optional[CurrentToken]:
    """Reads HMGET's answer for :data:`STORED_FIELDS`. ``None`` when the hash holds no usable
    token: no ``access_token``, no ``expires_at``, or an ``expires_at`` at or before ``now_ms``.

    :raises MalformedStoredTokenError: when a field is missing or not of its type.
    """
    text = [_decode(key, name, value) for name, value in zip(STORED_FIELDS, values)]
    access_token, client_id, token_type, scope, generation, obtained_at, expires_at, fingerprint = text
    if access_token is None or expires_at is None:
        return None
    token = CurrentToken(
        access_token=access_token,
        client_id=_required(key, "client_id", client_id),
        token_type=_required(key, "token_type", token_type),
        scope=_required(key, "scope", scope),
        generation=_integer(key, "generation", generation),
        obtained_at=_integer(key, "obtained_at", obtained_at),
        expires_at=_integer(key, "expires_at", expires_at),
        fingerprint=_required(key, "fingerprint", fingerprint),
    )
    # Redis expires the key itself; this covers a reader whose clock runs ahead of Redis's.
    return None if token.expires_at <= now_ms else token


def _decode(key: str, name: str, value: RedisValue) -> Optional[str]:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedStoredTokenError(key, f'field "{name}" is not UTF-8', name) from None
    return value


def _required(key: str, name: str, value: Optional[str]) -> str:
    if value is None:
        raise MalformedStoredTokenError(key, f'has no "{name}" field', name)
    return value


def _integer(key: str, name: str, value: Optional[str]) -> int:
    """The worker writes integers as plain decimal digits; anything else (``""``, ``" 7"``,
    ``"7\\n"``, ``"1e3"``, ``"-3"``, ``"٣"``) is refused, not read as ``int()`` would."""
    text = _required(key, name, value)
    if _DECIMAL_DIGITS.fullmatch(text) is None or int(text) > MAX_EXACT_INTEGER:
        raise MalformedStoredTokenError(key, f'field "{name}" must be an integer, got {json.dumps(text)}', name)
    return int(text)


@dataclass(frozen=True)
class Announcement:
    """What a consumer reads from a token-updated message (docs/token-updated.schema.json)."""

    client_id: str
    generation: int


def parse_announcement(payload: Union[bytes, str]) -> Optional[Announcement]:
    """Reads a token-updated payload the way every consumer library does: a JSON object whose
    ``clientId`` is a string and whose ``generation`` is an integral JSON number within
    ±(2^53 - 1). Anything else is not an announcement (``None``) and is ignored."""
    try:
        value = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(value, dict):
        return None
    client_id, generation = value.get("clientId"), value.get("generation")
    if not isinstance(client_id, str) or isinstance(generation, bool) or not isinstance(generation, (int, float)):
        return None
    if isinstance(generation, float):
        if not generation.is_integer():
            return None
        generation = int(generation)
    if abs(generation) > MAX_EXACT_INTEGER:
        return None
    return Announcement(client_id, generation)


#: The first line of every proven message: names the purpose and version, so the MAC is useful for nothing else.
REFRESH_REQUEST_PROOF_CONTEXT = "token-lifecycle refresh-request v1"


def refresh_request_proof_message(client_id: str, rejected_fingerprint: Optional[str]) -> str:
    """The exact text (UTF-8) a refresh request's origin proof is computed over."""
    return f"{REFRESH_REQUEST_PROOF_CONTEXT}\n{client_id}\n{rejected_fingerprint or ''}"


def refresh_request_proof(access_token: str, client_id: str, rejected_fingerprint: Optional[str]) -> str:
    """The origin proof of a refresh-requests entry (docs/redis-contract.md, "The refresh request on
    ``<prefix>refresh-requests``"): base64url without padding of HMAC-SHA256 (RFC 2104) keyed with
    ``access_token``, the token the requester holds (the refused one, else the current one). It
    shows the worker that the entry's author can read the client's token; a fingerprint alone is
    public. The token never leaves the process. Never log the proof."""
    mac = hmac.new(access_token.encode(), refresh_request_proof_message(client_id, rejected_fingerprint).encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()


#: A traceparent of W3C Trace Context Level 1, version 00 (§3.2.2): lower-case hex trace-id (32),
#: parent-id (16) and trace-flags (2). A later version may append fields; the contract knows only 00.
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")


def is_traceparent(value: object) -> TypeGuard[str]:
    """Whether ``value`` is a traceparent a refresh request may carry, so that the worker's spans
    join the caller's trace: the contract's rule (test/contract/vectors.json, ``traceparents``),
    version 00, lower-case hex, neither ID all zeros (W3C Trace Context §3.2.2.3, §3.2.2.4)."""
    match = _TRACEPARENT.fullmatch(value) if isinstance(value, str) else None
    return match is not None and match.group(1) != "0" * 32 and match.group(2) != "0" * 16


def refresh_request_fields(
    client_id: str, rejected_fingerprint: Optional[str], reason: Optional[str], access_token: str, traceparent: Optional[str] = None
) -> Mapping[str, str]:
    """The fields of a refresh-requests entry, in order: ``clientId``, then ``rejectedFingerprint``
    and ``reason`` when given, then ``traceparent`` when it is one (:func:`is_traceparent`: the
    worker would drop any other; the proof does not cover it), then ``proof``, made with
    ``access_token``."""
    fields = {"clientId": client_id}
    if rejected_fingerprint is not None:
        fields["rejectedFingerprint"] = rejected_fingerprint
    if reason is not None:
        fields["reason"] = reason
    if is_traceparent(traceparent):
        fields["traceparent"] = traceparent
    fields["proof"] = refresh_request_proof(access_token, client_id, rejected_fingerprint)
    return fields
