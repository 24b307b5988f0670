package issuer

import "context"

// protocol is how one kind of issuer logs in, refreshes, revokes and inspects tokens. It is
// chosen once, when the Client is built; the HTTP transport (transport.go) is shared.
type protocol interface {
	login(ctx context.Context, req Request) (*Token, error)
	refresh(ctx context.Context, req Request, prev *Token) (*Token, error)
	revoke(ctx context.Context, req Request, tok *Token) error
	inspect(ctx context.Context, req Request, accessToken string) (*Introspection, error)
	canRefresh() bool
	canRevoke() bool
}

// protocolOf is the protocol an issuer spec names (ProtocolName): OAuth2, self-signed, a GitHub
// App, else a JSON login.
func protocolOf(c *Client) protocol {
	switch ProtocolName(&c.spec) {
	case ProtocolOAuth2:
		return oauth2Protocol{c: c, discovered: &discoveryCache{}}
	case ProtocolSelfSigned:
		return selfSignedProtocol{c}
	case ProtocolGitHubApp:
		return githubAppProtocol{c}
	}
	return jsonProtocol{c}
}

// oauth2Protocol speaks RFC 6749 grants, RFC 7009 revocation and RFC 7662 introspection. It
// keeps the issuer's discovery document (RFC 8414 / OIDC) between calls.
type oauth2Protocol struct {
	c          *Client
	discovered *discoveryCache
}

func (p oauth2Protocol) login(ctx context.Context, req Request) (*Token, error) {
	return p.c.oauth2Login(ctx, req)
}
func (p oauth2Protocol) refresh(ctx context.Context, req Request, prev *Token) (*Token, error) {
	return p.c.oauth2Refresh(ctx, req, prev)
}
func (p oauth2Protocol) revoke(ctx context.Context, req Request, tok *Token) error {
	return p.c.oauth2Revoke(ctx, req, tok)
}
func (p oauth2Protocol) inspect(ctx context.Context, req Request, token string) (*Introspection, error) {
	return p.c.oauth2Inspect(ctx, req, token)
}
func (oauth2Protocol) canRefresh() bool { return true }

// canRevoke: a revocation endpoint is configured, or discovery may name one.
func (p oauth2Protocol) canRevoke() bool {
	return p.c.spec.Revoke != nil || (p.c.spec.OAuth2 != nil && p.c.spec.OAuth2.IssuerURL != "")
}

// jsonProtocol is a JSON login with optional refresh, revoke and token-info endpoints.
type jsonProtocol struct{ c *Client }

func (p jsonProtocol) login(ctx context.Context, req Request) (*Token, error) {
	return p.c.jsonLogin(ctx, req)
}
func (p jsonProtocol) refresh(ctx context.Context, req Request, prev *Token) (*Token, error) {
	return p.c.jsonRefresh(ctx, req, prev)
}
func (p jsonProtocol) revoke(ctx context.Context, req Request, tok *Token) error {
	return p.c.jsonRevoke(ctx, req, tok)
}
func (p jsonProtocol) inspect(ctx context.Context, req Request, token string) (*Introspection, error) {
	return p.c.jsonInspect(ctx, req, token)
}
func (p jsonProtocol) canRefresh() bool { return p.c.spec.Refresh != nil }
func (p jsonProtocol) canRevoke() bool  { return p.c.spec.Revoke != nil }
