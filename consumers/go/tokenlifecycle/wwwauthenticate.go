package tokenlifecycle

import "strings"

// Parsing of the WWW-Authenticate response header, so a consumer can tell the one Bearer error
// after which it should get a new token (invalid_token) from those after which it must not
// (insufficient_scope, invalid_request, or a challenge without an error code). The same algorithm
// as the Node library's consumers/node/src/www-authenticate.ts; test/contract/vectors.json holds them to it.
//
// Grammar (RFC 9110 §11.6.1 and §11.2):
//
//	WWW-Authenticate = #challenge
//	challenge        = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
//	auth-param       = token BWS "=" BWS ( token / quoted-string )
//	token68          = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
//
// Challenges and their parameters are both separated by commas, so a comma may start either; a
// name followed by "=" and a value continues the current challenge, anything else starts the next.

// Challenge is one challenge of a WWW-Authenticate header.
type Challenge struct {
	// Scheme is the auth-scheme as sent; compare it case-insensitively (RFC 9110 §11.1).
	Scheme string
	// Params are the auth-params, names lower-cased (RFC 9110 §11.2); the first of duplicates wins.
	Params map[string]string
	// Token68 is the token68 form of the challenge's data, when it carries one instead of params.
	Token68 string
}

// BearerChallenge holds the parts of a Bearer challenge that RFC 6750 §3 defines ("" when absent).
type BearerChallenge struct {
	Realm string
	// Error is invalid_request, invalid_token, insufficient_scope or an extension code (RFC 6750 §3.1).
	Error            string
	ErrorDescription string
	ErrorURI         string
	Scope            string
}

// ParseWWWAuthenticate parses the values of WWW-Authenticate header lines (as in
// http.Header.Values) as one comma-separated list of challenges.
//
// Errors: [ErrInvalidWWWAuthenticate] ([*WWWAuthenticateSyntaxError]) when the header does not
// follow the grammar.
func ParseWWWAuthenticate(values ...string) ([]Challenge, error) {
	p := challengeParser{text: strings.Join(values, ", ")}
	return p.parse()
}

// FindBearerChallenge returns the first Bearer challenge (scheme compared case-insensitively) of
// the header lines; ok is false when there is none, no header, or a malformed one: a client that
// cannot read the challenge must not act on it.
func FindBearerChallenge(values ...string) (challenge BearerChallenge, ok bool) {
	if len(values) == 0 {
		return BearerChallenge{}, false
	}
	challenges, err := ParseWWWAuthenticate(values...)
	if err != nil {
		return BearerChallenge{}, false
	}
	for _, c := range challenges {
		if strings.EqualFold(c.Scheme, "bearer") {
			return BearerChallenge{Realm: c.Params["realm"], Error: c.Params["error"], ErrorDescription: c.Params["error_description"], ErrorURI: c.Params["error_uri"], Scope: c.Params["scope"]}, true
		}
	}
	return BearerChallenge{}, false
}

// IsInvalidTokenChallenge reports whether the WWW-Authenticate header lines say the access token
// itself was refused: a Bearer challenge with error="invalid_token" ("expired, revoked, malformed,
// or invalid for other reasons", RFC 6750 §3.1). It is the only case in which a new token can
// help; after insufficient_scope, invalid_request or no error code a new token is refused alike.
func IsInvalidTokenChallenge(values ...string) bool {
	challenge, ok := FindBearerChallenge(values...)
	return ok && challenge.Error == "invalid_token"
}

type challengeParser struct {
	text     string
	position int
}

func (p *challengeParser) parse() (challenges []Challenge, err error) {
	// fail panics with the syntax error, so the recursive descent needs no error plumbing; no
	// other panic is recovered.
	defer func() {
		recovered := recover()
		if recovered == nil {
			return
		}
		syntaxError, ok := recovered.(*WWWAuthenticateSyntaxError)
		if !ok {
			panic(recovered)
		}
		challenges, err = nil, syntaxError
	}()
	challenges = []Challenge{}
	p.skipListSeparators()
	for !p.atEnd() {
		challenges = append(challenges, p.parseChallenge())
		p.skipListSeparators()
	}
	return challenges, nil
}

func (p *challengeParser) parseChallenge() Challenge {
	challenge := Challenge{Scheme: p.expectToken("an auth-scheme"), Params: map[string]string{}}
	// The scheme is separated from its params by at least one space; a comma or the end ends it.
	if !p.skipSpaces() {
		if p.atEnd() || p.peek() == ',' {
			return challenge
		}
		p.fail("a space or a comma after the auth-scheme")
	}
	if p.atEnd() || p.peek() == ',' {
		return challenge
	}
	if token68, ok := p.tryToken68(); ok {
		challenge.Token68 = token68
		return challenge
	}
	for {
		name, value := p.parseParam()
		key := strings.ToLower(name)
		if _, seen := challenge.Params[key]; !seen {
			challenge.Params[key] = value
		}
		// After a param: the end, or commas followed by either another param or the next challenge.
		p.skipSpaces()
		if p.atEnd() {
			break
		}
		if p.peek() != ',' {
			p.fail("a comma between auth-params")
		}
		beforeSeparators := p.position
		p.skipListSeparators()
		if p.atEnd() {
			break
		}
		if !p.startsParam() {
			p.position = beforeSeparators
			break
		}
	}
	return challenge
}

// parseParam reads an auth-param: token BWS "=" BWS ( token / quoted-string ).
func (p *challengeParser) parseParam() (name, value string) {
	name = p.expectToken("an auth-param name")
	p.skipSpaces()
	if p.peek() != '=' {
		p.fail(`"=" after the auth-param name "` + name + `"`)
	}
	p.position++
	p.skipSpaces()
	if p.peek() == '"' {
		return name, p.parseQuotedString()
	}
	return name, p.expectToken(`a token or quoted-string as the value of "` + name + `"`)
}

// parseQuotedString reads a quoted-string of RFC 9110 §5.6.4, with quoted-pairs unescaped.
func (p *challengeParser) parseQuotedString() string {
	start := p.position
	p.position++ // the opening DQUOTE
	var value strings.Builder
	for !p.atEnd() {
		c := p.text[p.position]
		if c == '"' {
			p.position++
			return value.String()
		}
		if c == '\\' {
			if p.position+1 >= len(p.text) {
				break
			}
			value.WriteByte(p.text[p.position+1])
			p.position += 2
			continue
		}
		value.WriteByte(c)
		p.position++
	}
	p.position = start
	p.fail("a closing double quote")
	return ""
}

// tryToken68 reads a token68, recognised only when it is all the challenge holds (followed by the
// end or a comma): "abc=" could otherwise also start an auth-param.
func (p *challengeParser) tryToken68() (string, bool) {
	end := p.position
	for end < len(p.text) && isToken68Char(p.text[end]) {
		end++
	}
	if end == p.position {
		return "", false
	}
	for end < len(p.text) && p.text[end] == '=' {
		end++
	}
	after := end
	for after < len(p.text) && (p.text[after] == ' ' || p.text[after] == '\t') {
		after++
	}
	if after < len(p.text) && p.text[after] != ',' {
		return "", false
	}
	token68 := p.text[p.position:end]
	p.position = end
	return token68, true
}

// startsParam reports whether the text at the position is `token BWS "="` followed by a value.
func (p *challengeParser) startsParam() bool {
	i := p.position
	for i < len(p.text) && isTokenChar(p.text[i]) {
		i++
	}
	if i == p.position {
		return false
	}
	i = skipSpacesFrom(p.text, i)
	if i >= len(p.text) || p.text[i] != '=' {
		return false
	}
	i = skipSpacesFrom(p.text, i+1)
	return i < len(p.text) && !strings.ContainsRune("=, \t", rune(p.text[i]))
}

func (p *challengeParser) expectToken(what string) string {
	end := p.position
	for end < len(p.text) && isTokenChar(p.text[end]) {
		end++
	}
	if end == p.position {
		p.fail(what)
	}
	token := p.text[p.position:end]
	p.position = end
	return token
}

// skipSpaces skips SP and HTAB (OWS/BWS) and reports whether there were any.
func (p *challengeParser) skipSpaces() bool {
	start := p.position
	p.position = skipSpacesFrom(p.text, p.position)
	return p.position > start
}

// skipListSeparators skips the separators of a #list: commas and whitespace, empty elements
// included (RFC 9110 §5.6.1).
func (p *challengeParser) skipListSeparators() {
	for !p.atEnd() && (p.text[p.position] == ',' || p.text[p.position] == ' ' || p.text[p.position] == '\t') {
		p.position++
	}
}

// peek returns the byte at the position, 0 at the end.
func (p *challengeParser) peek() byte {
	if p.atEnd() {
		return 0
	}
	return p.text[p.position]
}

func (p *challengeParser) atEnd() bool { return p.position >= len(p.text) }

func (p *challengeParser) fail(expected string) {
	panic(&WWWAuthenticateSyntaxError{Header: p.text, Position: p.position, Expected: expected})
}

func skipSpacesFrom(text string, i int) int {
	for i < len(text) && (text[i] == ' ' || text[i] == '\t') {
		i++
	}
	return i
}

// isTokenChar reports whether c is a tchar of RFC 9110 §5.6.2.
func isTokenChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func isToken68Char(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~+/", c) >= 0
}
