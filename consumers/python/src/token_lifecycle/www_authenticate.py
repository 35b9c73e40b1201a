"""Parsing of the ``WWW-Authenticate`` response header, so a consumer can tell the one Bearer error
after which it should get a new token (``invalid_token``) from those after which it must not
(``insufficient_scope``, ``invalid_request``, or a challenge without an error code). The same
algorithm as the Node library's consumers/node/src/www-authenticate.ts; test/contract/vectors.json holds both.

Grammar (RFC 9110 §11.6.1 and §11.2)::

    WWW-Authenticate = #challenge
    challenge        = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
    auth-param       = token BWS "=" BWS ( token / quoted-string )
    token68          = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="

Challenges and their parameters are both separated by commas, so a comma may start either; a name
followed by ``=`` and a value continues the current challenge, anything else starts the next one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping, NoReturn, Sequence, Union

from .errors import WwwAuthenticateSyntaxError

#: One header value, or the values of several header lines (parsed as one list).
HeaderValue = Union[str, Sequence[str]]

_TCHAR = r"!#$%&'*+\-.^_`|~0-9A-Za-z"
#: tchar of RFC 9110 §5.6.2.
_TOKEN = re.compile(f"[{_TCHAR}]+")
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_TOKEN68_END = re.compile(r"[ \t]*(,|\Z)")
_PARAM_START = re.compile(f"[{_TCHAR}]+[ \\t]*=[ \\t]*[^=, \\t]")


@dataclass(frozen=True)
class AuthChallenge:
    """One challenge of a ``WWW-Authenticate`` header."""

    #: The auth-scheme as sent; compare it case-insensitively (RFC 9110 §11.1).
    scheme: str
    #: The auth-params, names lower-cased (RFC 9110 §11.2); the first of duplicates wins.
    params: Mapping[str, str] = field(default_factory=dict)
    #: The token68 form of the challenge's data, when it carries one instead of params.
    token68: str | None = None


@dataclass(frozen=True)
class BearerChallenge:
    """The parts of a Bearer challenge that RFC 6750 §3 defines (``None`` when absent)."""

    realm: str | None = None
    #: ``invalid_request``, ``invalid_token``, ``insufficient_scope`` or an extension code (RFC 6750 §3.1).
    error: str | None = None
    error_description: str | None = None
    error_uri: str | None = None
    scope: str | None = None


def parse_www_authenticate(header: HeaderValue) -> list[AuthChallenge]:
    """Parses a ``WWW-Authenticate`` header (several lines: one comma-separated list) into its challenges.

    :raises WwwAuthenticateSyntaxError: when the header does not follow the grammar.
    """
    text = header if isinstance(header, str) else ", ".join(header)
    return _ChallengeParser(text).parse()


def find_bearer_challenge(header: HeaderValue | None) -> BearerChallenge | None:
    """The first Bearer challenge (scheme compared case-insensitively), or ``None`` when there is
    none, no header, or a malformed one: a client that cannot read the challenge must not act on it."""
    if header is None:
        return None
    try:
        challenges = parse_www_authenticate(header)
    except WwwAuthenticateSyntaxError:
        return None
    for challenge in challenges:
        if challenge.scheme.lower() == "bearer":
            params = challenge.params
            return BearerChallenge(
                realm=params.get("realm"),
                error=params.get("error"),
                error_description=params.get("error_description"),
                error_uri=params.get("error_uri"),
                scope=params.get("scope"),
            )
    return None


def is_invalid_token_challenge(header: HeaderValue | None) -> bool:
    """Whether the header says the access token itself was refused: a Bearer challenge with
    ``error="invalid_token"`` ("expired, revoked, malformed, or invalid for other reasons"). The
    only case in which a new token can help (RFC 6750 §3.1)."""
    challenge = find_bearer_challenge(header)
    return challenge is not None and challenge.error == "invalid_token"


def calls_for_new_token(status: int, header: HeaderValue | None) -> bool:
    """Whether an API's answer calls for ONE refresh and ONE retry: a 401 with a Bearer
    ``invalid_token`` challenge. Never another status, another error, or no error code."""
    return status == 401 and is_invalid_token_challenge(header)


class _ChallengeParser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.position = 0

    def parse(self) -> list[AuthChallenge]:
        challenges: list[AuthChallenge] = []
        self._skip_list_separators()
        while not self._at_end():
            challenges.append(self._parse_challenge())
            self._skip_list_separators()
        return challenges

    def _parse_challenge(self) -> AuthChallenge:
        scheme = self._expect_token("an auth-scheme")
        params: dict[str, str] = {}
        # The scheme is separated from its params by at least one space; a comma or the end ends it.
        if not self._skip_spaces():
            if self._at_end() or self._peek() == ",":
                return AuthChallenge(scheme, params)
            self._fail("a space or a comma after the auth-scheme")
        if self._at_end() or self._peek() == ",":
            return AuthChallenge(scheme, params)

        token68 = self._try_token68()
        if token68 is not None:
            return AuthChallenge(scheme, params, token68)

        while True:
            name, value = self._parse_param()
            params.setdefault(name.lower(), value)
            # After a param: the end, or commas followed by either another param or the next challenge.
            self._skip_spaces()
            if self._at_end():
                break
            if self._peek() != ",":
                self._fail("a comma between auth-params")
            before_separators = self.position
            self._skip_list_separators()
            if self._at_end():
                break
            if _PARAM_START.match(self.text, self.position) is None:
                self.position = before_separators
                break
        return AuthChallenge(scheme, params)

    def _parse_param(self) -> tuple[str, str]:
        """An auth-param: ``token BWS "=" BWS ( token / quoted-string )``."""
        name = self._expect_token("an auth-param name")
        self._skip_spaces()
        if self._peek() != "=":
            self._fail(f'"=" after the auth-param name "{name}"')
        self.position += 1
        self._skip_spaces()
        if self._peek() == '"':
            return name, self._parse_quoted_string()
        return name, self._expect_token(f'a token or quoted-string as the value of "{name}"')

    def _parse_quoted_string(self) -> str:
        """A quoted-string of RFC 9110 §5.6.4, with quoted-pairs unescaped."""
        start = self.position
        self.position += 1  # the opening DQUOTE
        value: list[str] = []
        while not self._at_end():
            char = self.text[self.position]
            if char == '"':
                self.position += 1
                return "".join(value)
            if char == "\\":
                if self.position + 1 >= len(self.text):
                    break
                value.append(self.text[self.position + 1])
                self.position += 2
                continue
            value.append(char)
            self.position += 1
        self.position = start
        self._fail("a closing double quote")

    def _try_token68(self) -> str | None:
        """A token68, recognised only when it is all the challenge holds (followed by the end or a
        comma): ``abc=`` could otherwise also start an auth-param."""
        match = _TOKEN68.match(self.text, self.position)
        if match is None or _TOKEN68_END.match(self.text, match.end()) is None:
            return None
        self.position = match.end()
        return match.group()

    def _expect_token(self, what: str) -> str:
        match = _TOKEN.match(self.text, self.position)
        if match is None:
            self._fail(what)
        self.position = match.end()
        return match.group()

    def _skip_spaces(self) -> bool:
        """Skips SP and HTAB (OWS/BWS); says whether there were any."""
        start = self.position
        while self._peek() in (" ", "\t"):
            self.position += 1
        return self.position > start

    def _skip_list_separators(self) -> None:
        """Skips the separators of a #list: commas and whitespace, empty elements included (RFC 9110 §5.6.1)."""
        while self._peek() in (",", " ", "\t"):
            self.position += 1

    def _peek(self) -> str | None:
        return self.text[self.position] if self.position < len(self.text) else None

    def _at_end(self) -> bool:
        return self.position >= len(self.text)

    def _fail(self, expected: str) -> NoReturn:
        raise WwwAuthenticateSyntaxError(self.text, self.position, expected)
