"""The errors of the consumer library: one class per condition, each with a stable ``code`` (the
same strings as the Node and Go libraries) and the subject in attributes. None carries a token."""

from __future__ import annotations

from typing import ClassVar


class TokenLifecycleError(Exception):
    """Base class of the library's errors; switch on :attr:`code`."""

    code: ClassVar[str]


class TokenUnavailableError(TokenLifecycleError):
    """Redis holds no usable token for the client: the worker has not stored one yet, the last one
    expired (the key expires with the token), or the client is not registered. Retrying later, or
    ``wait_for_token``, may help; an expired token never does."""

    code = "token_unavailable"

    def __init__(self, client_id: str, key: str) -> None:
        super().__init__(
            f"No current token for client {client_id!r} in Redis (key {key}): "
            "none was stored yet, it expired, or the client is not registered"
        )
        self.client_id = client_id
        #: The Redis key that was read, e.g. ``oauth:token:orders``.
        self.key = key


class RedisUnavailableError(TokenLifecycleError):
    """Redis did not answer the reader (down, unreachable, or refusing the command); redis-py's
    error is ``__cause__``. The worker keeps tokens fresh meanwhile; retry later."""

    code = "redis_unavailable"

    def __init__(self, client_id: str, cause: BaseException) -> None:
        super().__init__(f"Could not read the token of client {client_id!r} from Redis: {cause}")
        self.client_id = client_id


class MalformedStoredTokenError(TokenLifecycleError):
    """The key holds something other than the contract's layout (something other than the worker
    wrote it). Names the key and the field, never the token."""

    code = "malformed_stored_token"

    def __init__(self, key: str, problem: str, field: str | None = None) -> None:
        super().__init__(f"Redis record {key} {problem}")
        self.key = key
        #: The hash field at fault; ``None`` when the key is not a hash at all.
        self.field = field


class TokenWaitTimeoutError(TokenLifecycleError):
    """``wait_for_token`` saw no token newer than ``newer_than`` within ``timeout`` seconds."""

    code = "token_wait_timeout"

    def __init__(self, client_id: str, newer_than: int, timeout: float) -> None:
        super().__init__(
            f"No token for client {client_id!r} with a generation above {newer_than} arrived within {timeout:g} s"
        )
        self.client_id = client_id
        self.newer_than = newer_than
        self.timeout = timeout


class RefreshRequestError(TokenLifecycleError):
    """The refresh request's stream entry was not stored: Redis refused it (redis-py's error is
    ``__cause__``), or, when the caller gave no token, Redis holds none of the client to make the
    entry's origin proof with (``problem`` says so), or reading it failed."""

    code = "refresh_request_failed"

    def __init__(self, client_id: str, stream: str, cause: BaseException | None = None, *, problem: str | None = None) -> None:
        what = problem if problem is not None else f"Redis refused the entry on {stream}"
        super().__init__(f"Could not request a refresh for client {client_id!r}: {what}" + (f": {cause}" if cause is not None else ""))
        self.client_id = client_id
        self.stream = stream
        self.problem = problem


class TokenReaderClosedError(TokenLifecycleError):
    """The reader was closed; create a new one."""

    code = "token_reader_closed"

    def __init__(self) -> None:
        super().__init__("The token reader was closed")


class WwwAuthenticateSyntaxError(TokenLifecycleError, ValueError):
    """A WWW-Authenticate header does not follow RFC 9110 §11.6.1; ``position`` is the offset
    where parsing stopped."""

    code = "invalid_www_authenticate"

    def __init__(self, header: str, position: int, expected: str) -> None:
        super().__init__(f"Malformed WWW-Authenticate header at offset {position}: expected {expected}")
        self.header = header
        self.position = position
