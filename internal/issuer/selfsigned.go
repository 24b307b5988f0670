package issuer

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/tokenkeeper/tokenkeeper/internal/tmpl"
)

// DefaultSelfSignedLifetime is a self-signed token's lifetime when the issuer names none (App
// Store Connect accepts at most 20 minutes).
const DefaultSelfSignedLifetime = 20 * time.Minute

// selfSignedProtocol mints JWTs in the manager from each Credential's key: no request is made,
// so there is nothing to refresh, revoke or inspect.
type selfSignedProtocol struct{ c *Client }

func (p selfSignedProtocol) login(_ context.Context, req Request) (*Token, error) {
	return p.c.selfSigned(req)
}
func (selfSignedProtocol) refresh(context.Context, Request, *Token) (*Token, error) {
	return nil, ErrUnsupported
}
func (selfSignedProtocol) revoke(context.Context, Request, *Token) error { return ErrUnsupported }
func (selfSignedProtocol) inspect(context.Context, Request, string) (*Introspection, error) {
	return nil, ErrUnsupported
}
func (selfSignedProtocol) canRefresh() bool { return false }
func (selfSignedProtocol) canRevoke() bool  { return false }

// selfSigned signs a token with the claims the issuer's templates render from the Credential's
// inputs, iat now and exp a lifetime later.
func (c *Client) selfSigned(req Request) (*Token, error) {
	if req.Kind != LoginPrivateKey {
		return nil, configError("a selfSigned issuer takes a privateKey login, not " + string(req.Kind))
	}
	key, err := parseSigningKey(req.Inputs[InputPrivateKey])
	if err != nil {
		return nil, configError("privateKey: " + err.Error())
	}
	der, err := x509.MarshalPKIXPublicKey(key.key.Public())
	if err != nil {
		return nil, configError("privateKey: the public key cannot be encoded")
	}
	sum := sha256.Sum256(der)
	vars := make(map[string]string, len(req.Inputs)+1)
	for k, v := range req.Inputs {
		vars[k] = v
	}
	vars["publicKeyFingerprint"] = "SHA256:" + base64.StdEncoding.EncodeToString(sum[:])
	spec := c.spec.SelfSigned
	render := func(field, text string) (string, error) {
		t, err := tmpl.Parse(field, text)
		if err != nil {
			return "", configError(field + ": " + err.Error())
		}
		out, err := t.Execute(vars)
		if errors.Is(err, tmpl.ErrTooLarge) {
			return "", configError(field + ": " + err.Error())
		}
		if err != nil { // the error may quote an input: say only that it failed
			return "", configError(field + ": rendering failed")
		}
		return out, nil
	}
	now := c.clock.Now().Truncate(time.Second)
	lifetime := DefaultSelfSignedLifetime
	if spec.Lifetime != nil && spec.Lifetime.Duration > 0 {
		lifetime = spec.Lifetime.Duration
	}
	if req.MaxLifetime > 0 {
		lifetime = min(lifetime, req.MaxLifetime)
	}
	claims := jwt.MapClaims{}
	names := make([]string, 0, len(spec.Claims))
	for name := range spec.Claims {
		names = append(names, name)
	}
	sort.Strings(names)
	rendered := 0
	for _, name := range names {
		v, err := render("selfSigned.claims["+name+"]", string(spec.Claims[name]))
		if err != nil {
			return nil, err
		}
		// Each claim is bounded by the template bound, all of them by the token's: a token over
		// it is refused before it is held (40 tenants' 2.8 MB tokens once took the manager past
		// its memory limit).
		if rendered += len(name) + len(v); rendered > MaxTokenLength {
			return nil, configError(fmt.Sprintf("selfSigned.claims: the claims render more than %d KiB, the bound of a token (MaxTokenLength)", MaxTokenLength>>10))
		}
		claims[name] = v
	}
	claims["iat"], claims["exp"] = now.Unix(), now.Add(lifetime).Unix()
	tok := jwt.NewWithClaims(key.method, claims)
	tok.Header["kid"] = key.kid
	if spec.KeyID != "" {
		if tok.Header["kid"], err = render("selfSigned.keyID", string(spec.KeyID)); err != nil {
			return nil, err
		}
	}
	signed, err := tok.SignedString(key.key)
	if err != nil {
		return nil, configError("signing the token failed")
	}
	if len(signed) > MaxTokenLength {
		return nil, configError(fmt.Sprintf("selfSigned: the signed token is %d KiB, over the %d KiB bound of a token (MaxTokenLength)", len(signed)>>10, MaxTokenLength>>10))
	}
	return &Token{AccessToken: signed, Scheme: "Bearer", IssuedAt: now, ExpiresAt: now.Add(lifetime), ExpirySource: ExpiryFromJWT, ExpiryField: "exp"}, nil
}
