/**
 * Parsing of the `WWW-Authenticate` response header, so a consumer can tell the one Bearer error
 * after which it should get a new token (`invalid_token`) from the ones after which it must not
 * (`insufficient_scope`, `invalid_request`, or a challenge without an error code).
 *
 * Grammar (RFC 9110 §11.6.1 and §11.2, formerly RFC 7235 §4.1 and §2.1):
 *
 * ```
 * WWW-Authenticate = #challenge
 * challenge        = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
 * auth-param       = token BWS "=" BWS ( token / quoted-string )
 * token68          = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
 * ```
 *
 * Challenges and their parameters are both separated by commas, so a comma may start either; a
 * name followed by `=` continues the current challenge, anything else starts the next one.
 */

/** One challenge of a `WWW-Authenticate` header. */
export interface AuthChallenge {
  /** The auth-scheme as sent; compare it case-insensitively (RFC 9110 §11.1). */
  scheme: string;
  /** The auth-params, names lower-cased (they are case-insensitive, RFC 9110 §11.2); the first of duplicates wins. */
  params: Readonly<Record<string, string>>;
  /** The token68 form of credentials-like data, when the challenge carries one instead of params. */
  token68?: string;
}

/** The parts of a Bearer challenge that RFC 6750 §3 defines. */
export interface BearerChallenge {
  realm?: string;
  /** `invalid_request`, `invalid_token`, `insufficient_scope` or an extension code (RFC 6750 §3.1). */
  error?: string;
  errorDescription?: string;
  errorUri?: string;
  scope?: string;
}

/** The header does not follow the grammar; `position` is the offset where parsing stopped. */
export class WwwAuthenticateSyntaxError extends Error {
  readonly code = 'invalid_www_authenticate';
  constructor(
    readonly header: string,
    readonly position: number,
    problem: string,
  ) {
    super(`Malformed WWW-Authenticate header at offset ${position}: ${problem}`);
    this.name = 'WwwAuthenticateSyntaxError';
  }
}

/** tchar of RFC 9110 §5.6.2. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+/;
const TOKEN68 = /^[A-Za-z0-9\-._~+/]+=*/;

/**
 * Parses a `WWW-Authenticate` header into its challenges. Several header lines (an array, as
 * Node gives repeated headers in some cases) are parsed as one comma-separated list.
 *
 * @throws {@link WwwAuthenticateSyntaxError} when the header does not follow the grammar.
 * @see RFC 9110 §11.6.1
 */
export function parseWwwAuthenticate(header: string | readonly string[]): AuthChallenge[] {
  const text = typeof header === 'string' ? header : header.join(', ');
  return new ChallengeParser(text).parse();
}

/**
 * The first Bearer challenge of a `WWW-Authenticate` header (scheme compared case-insensitively),
 * or `undefined` when there is none, the header is absent, or it is malformed: a client that cannot
 * read the challenge must not act on it.
 *
 * @see RFC 6750 §3 (the challenge), §3.1 (error codes)
 */
export function findBearerChallenge(header: string | readonly string[] | undefined): BearerChallenge | undefined {
  if (header === undefined) return undefined;
  let challenges: AuthChallenge[];
  try {
    challenges = parseWwwAuthenticate(header);
  } catch (error) {
    if (error instanceof WwwAuthenticateSyntaxError) return undefined;
    throw error;
  }
  const bearer = challenges.find((challenge) => challenge.scheme.toLowerCase() === 'bearer');
  if (bearer === undefined) return undefined;
  const { realm, error, error_description: errorDescription, error_uri: errorUri, scope } = bearer.params;
  return {
    ...(realm !== undefined && { realm }),
    ...(error !== undefined && { error }),
    ...(errorDescription !== undefined && { errorDescription }),
    ...(errorUri !== undefined && { errorUri }),
    ...(scope !== undefined && { scope }),
  };
}

/**
 * Whether a response's `WWW-Authenticate` header says the access token itself was refused: a
 * Bearer challenge with `error="invalid_token"` ("expired, revoked, malformed, or invalid for
 * other reasons"). This is the only case in which getting a new token can help; after
 * `insufficient_scope`, `invalid_request` or a challenge without an error code, a new token would
 * be refused the same way.
 *
 * @see RFC 6750 §3.1
 */
export function isInvalidTokenChallenge(header: string | readonly string[] | undefined): boolean {
  return findBearerChallenge(header)?.error === 'invalid_token';
}

class ChallengeParser {
  private position = 0;

  constructor(private readonly text: string) {}

  parse(): AuthChallenge[] {
    const challenges: AuthChallenge[] = [];
    this.skipListSeparators();
    while (!this.atEnd()) {
      challenges.push(this.parseChallenge());
      this.skipListSeparators();
    }
    return challenges;
  }

  private parseChallenge(): AuthChallenge {
    const scheme = this.expectToken('an auth-scheme');
    const params: Record<string, string> = {};
    // The scheme is separated from its params by at least one space; a comma or the end ends it.
    if (!this.skipSpaces()) {
      if (this.atEnd() || this.peek() === ',') return { scheme, params };
      this.fail('a space or a comma after the auth-scheme');
    }
    if (this.atEnd() || this.peek() === ',') return { scheme, params };

    const token68 = this.tryToken68();
    if (token68 !== undefined) return { scheme, params, token68 };

    for (;;) {
      const [name, value] = this.parseParam();
      const key = name.toLowerCase();
      if (!(key in params)) params[key] = value;
      // After a param: the end, or commas followed by either another param or the next challenge.
      this.skipSpaces();
      if (this.atEnd()) break;
      if (this.peek() !== ',') this.fail('a comma between auth-params');
      const beforeSeparators = this.position;
      this.skipListSeparators();
      if (this.atEnd()) break;
      if (!this.startsParam()) {
        this.position = beforeSeparators;
        break;
      }
    }
    return { scheme, params };
  }

  /** An auth-param: `token BWS "=" BWS ( token / quoted-string )`. */
  private parseParam(): [string, string] {
    const name = this.expectToken('an auth-param name');
    this.skipSpaces();
    if (this.peek() !== '=') this.fail(`"=" after the auth-param name "${name}"`);
    this.position++;
    this.skipSpaces();
    const value = this.peek() === '"' ? this.parseQuotedString() : this.expectToken(`a token or quoted-string as the value of "${name}"`);
    return [name, value];
  }

  /** quoted-string of RFC 9110 §5.6.4, with quoted-pairs unescaped. */
  private parseQuotedString(): string {
    const start = this.position;
    this.position++; // the opening DQUOTE
    let value = '';
    while (!this.atEnd()) {
      const char = this.text[this.position]!;
      if (char === '"') {
        this.position++;
        return value;
      }
      if (char === '\\') {
        if (this.position + 1 >= this.text.length) break;
        value += this.text[this.position + 1];
        this.position += 2;
        continue;
      }
      value += char;
      this.position++;
    }
    this.position = start;
    return this.fail('a closing double quote');
  }

  /**
   * A token68, recognised only when it is all the challenge holds (followed by the end or a
   * comma): `abc=` could otherwise also start an auth-param.
   */
  private tryToken68(): string | undefined {
    const match = TOKEN68.exec(this.text.slice(this.position));
    if (match === null) return undefined;
    const after = this.text.slice(this.position + match[0].length).replace(/^[ \t]*/, '');
    if (after !== '' && !after.startsWith(',')) return undefined;
    // `name=` with nothing after it is still read as a token68, as the grammar allows.
    this.position += match[0].length;
    return match[0];
  }

  /** Whether the text at the position is `token BWS "="` followed by a value (an auth-param). */
  private startsParam(): boolean {
    const match = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+)[ \t]*=[ \t]*([^=, \t]|$)/.exec(this.text.slice(this.position));
    return match !== null && match[2] !== '';
  }

  private expectToken(what: string): string {
    const match = TOKEN.exec(this.text.slice(this.position));
    if (match === null) this.fail(what);
    this.position += match[0].length;
    return match[0];
  }

  /** Skips SP and HTAB (OWS/BWS); says whether there were any. */
  private skipSpaces(): boolean {
    const start = this.position;
    while (this.peek() === ' ' || this.peek() === '\t') this.position++;
    return this.position > start;
  }

  /** Skips the separators of a #list: commas and whitespace, empty elements included (RFC 9110 §5.6.1). */
  private skipListSeparators(): void {
    while (this.peek() === ',' || this.peek() === ' ' || this.peek() === '\t') this.position++;
  }

  private peek(): string | undefined {
    return this.text[this.position];
  }

  private atEnd(): boolean {
    return this.position >= this.text.length;
  }

  private fail(expected: string): never {
    throw new WwwAuthenticateSyntaxError(this.text, this.position, `expected ${expected}`);
  }
}
