package issuer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/tmpl"
)

const contentJSON = "application/json"

// loginFields are the request fields of the default JSON login body, per login kind.
var loginFields = map[LoginKind][]string{
	LoginPassword:          {InputUsername, InputPassword},
	LoginAPIKey:            {InputKey, InputSecret},
	LoginClientCredentials: {InputClientID, InputClientSecret},
}

func (c *Client) jsonLogin(ctx context.Context, req Request) (*Token, error) {
	if req.Kind == LoginServiceAccount && c.spec.JSON.Body == "" {
		return nil, &Error{Class: ClassConfig, Op: "login", Reason: "a json issuer reads the ServiceAccount token as .serviceAccountToken in spec.json.body: set a body template"}
	}
	if req.Kind == LoginJWTBearer {
		return nil, &Error{Class: ClassConfig, Op: "login", Reason: "jwtBearer needs an oauth2 issuer"}
	}
	if req.Kind == LoginClientCredentials && req.Inputs[InputPrivateKey] != "" && c.spec.JSON.Body == "" {
		return nil, &Error{Class: ClassConfig, Op: "login", Reason: "privateKeyKey (private_key_jwt) needs an oauth2 issuer; a json issuer takes the key only in its body template"}
	}
	secrets := c.secretsOf(req)
	body, sent, err := c.loginBody(req)
	if err != nil {
		return nil, &Error{Class: ClassConfig, Op: "login", Reason: secrets.sanitize(err.Error())}
	}
	method := string(c.spec.JSON.Method)
	if method == "" {
		method = http.MethodPost
	}
	resp, err := c.send(ctx, call{op: "login", method: method, url: string(c.spec.URL), contentType: contentJSON, body: body, secrets: secrets})
	if err != nil {
		return nil, err
	}
	if resp.status/100 != 2 {
		return nil, c.classify("login", resp, ClassInvalidCredentials, secrets)
	}
	return c.parse("login", resp, req, sent, secrets)
}

// loginBody renders the login request; sent reports whether a session duration was asked for.
func (c *Client) loginBody(req Request) (body []byte, sent bool, err error) {
	data := templateData(req)
	if req.SessionDuration > 0 {
		data["sessionDurationSeconds"] = int64(req.SessionDuration.Seconds())
	}
	if c.spec.JSON.Body != "" {
		body, err = renderTemplate("body", string(c.spec.JSON.Body), data)
	} else {
		fields := loginFields[req.Kind]
		if fields == nil {
			return nil, false, fmt.Errorf("json issuers take password, apiKey, clientCredentials or refreshToken logins, not %q", req.Kind)
		}
		obj := map[string]string{}
		for _, f := range fields {
			obj[f] = req.Inputs[f]
		}
		body, err = json.Marshal(obj)
	}
	if err != nil || c.spec.SessionDurationField == "" || req.SessionDuration <= 0 {
		return body, false, err
	}
	value := int64(req.SessionDuration.Seconds())
	if c.spec.SessionDurationUnit == v1alpha1.DurationMinutes {
		value = int64(req.SessionDuration.Minutes())
	}
	body, err = setPath(body, string(c.spec.SessionDurationField), value)
	return body, err == nil, err
}

func (c *Client) jsonRefresh(ctx context.Context, req Request, prev *Token) (*Token, error) {
	if c.spec.Refresh == nil {
		return nil, ErrUnsupported
	}
	secrets := c.secretsOf(req, prev.RefreshToken, prev.AccessToken)
	ep := c.spec.Refresh
	var (
		body []byte
		err  error
	)
	if ep.Body != "" {
		data := templateData(req)
		data["refreshToken"] = prev.RefreshToken
		body, err = renderTemplate("refresh.body", string(ep.Body), data)
	} else {
		field := prev.RefreshField
		if field == "" {
			field = InputRefreshToken
		}
		body, err = json.Marshal(map[string]string{field: prev.RefreshToken})
	}
	if err != nil {
		return nil, &Error{Class: ClassConfig, Op: "refresh", Reason: secrets.sanitize(err.Error())}
	}
	resp, err := c.send(ctx, call{op: "refresh", method: methodOr(ep.Method, http.MethodPost), url: string(ep.URL), contentType: contentJSON, body: body, secrets: secrets})
	if err != nil {
		return nil, err
	}
	if resp.status/100 != 2 {
		return nil, c.classify("refresh", resp, ClassRefreshRejected, secrets)
	}
	return c.parse("refresh", resp, req, false, secrets)
}

func (c *Client) jsonRevoke(ctx context.Context, req Request, tok *Token) error {
	ep := c.spec.Revoke
	if ep == nil {
		return ErrUnsupported
	}
	secrets := c.secretsOf(req, tok.AccessToken, tok.RefreshToken)
	var body []byte
	contentType := ""
	if ep.Body != "" {
		data := templateData(req)
		data["token"], data["refreshToken"] = tok.AccessToken, tok.RefreshToken
		var err error
		if body, err = renderTemplate("revoke.body", string(ep.Body), data); err != nil {
			return &Error{Class: ClassConfig, Op: "revoke", Reason: secrets.sanitize(err.Error())}
		}
		contentType = contentJSON
	}
	resp, err := c.send(ctx, call{op: "revoke", method: methodOr(ep.Method, http.MethodPost), url: string(ep.URL), contentType: contentType, body: body, header: bearer(tok, c.scheme()), secrets: secrets})
	if err != nil {
		return err
	}
	// 401: the token had already expired, which is what revoking wanted.
	if resp.status/100 == 2 || resp.status == http.StatusUnauthorized {
		return nil
	}
	return c.classify("revoke", resp, ClassInvalidCredentials, secrets)
}

func (c *Client) jsonInspect(ctx context.Context, req Request, accessToken string) (*Introspection, error) {
	ep := c.spec.TokenInfo
	if ep == nil {
		return nil, ErrUnsupported
	}
	secrets := c.secretsOf(req, accessToken)
	tok := &Token{AccessToken: accessToken}
	resp, err := c.send(ctx, call{op: "inspect", method: methodOr(ep.Method, http.MethodGet), url: string(ep.URL), header: bearer(tok, c.scheme()), secrets: secrets})
	if err != nil {
		return nil, err
	}
	switch {
	case resp.status == http.StatusUnauthorized || resp.status == http.StatusForbidden:
		return &Introspection{Active: false}, nil
	case resp.status/100 != 2:
		return nil, c.classify("inspect", resp, ClassInvalidCredentials, secrets)
	}
	in := &Introspection{Active: true}
	var claims map[string]any
	if json.Unmarshal(resp.body, &claims) == nil {
		in.Claims = claims
		in.Subject, _ = claims["sub"].(string)
		in.Scope, _ = claims["scope"].(string)
		if v, ok := claims["exp"]; ok {
			in.ExpiresAt, _ = ParseTime(v)
		}
	}
	return in, nil
}

// scheme is the Authorization scheme when the token does not carry one.
func (c *Client) scheme() string {
	if c.spec.TokenType != "" {
		return c.spec.TokenType
	}
	return "Bearer"
}

func methodOr(m v1alpha1.HTTPMethod, def string) string {
	if m == "" {
		return def
	}
	return string(m)
}

func templateData(req Request) map[string]any {
	data := make(map[string]any, len(req.Inputs)+2)
	for k, v := range req.Inputs {
		data[k] = v
	}
	return data
}

// renderTemplate renders a body template with data, within the bounds of package tmpl, and
// checks that the result is JSON.
func renderTemplate(name, text string, data map[string]any) ([]byte, error) {
	t, err := tmpl.Parse(name, text)
	if err != nil {
		return nil, fmt.Errorf("parsing %s template: %w", name, err)
	}
	rendered, err := t.Execute(data)
	if err != nil {
		return nil, fmt.Errorf("rendering %s template: %w", name, err)
	}
	out := []byte(rendered)
	if !json.Valid(out) {
		// The rendered text holds secrets: say what is wrong without showing it.
		return nil, fmt.Errorf("%s template does not render valid JSON (quote string values with toJson)", name)
	}
	return out, nil
}

// setPath sets a dotted path in a JSON object body, creating objects on the way.
func setPath(body []byte, path string, value any) ([]byte, error) {
	var obj map[string]any
	if err := json.Unmarshal(body, &obj); err != nil || obj == nil {
		return nil, errors.New("sessionDurationField needs a body that is a JSON object")
	}
	cur := obj
	segs := strings.Split(path, ".")
	for _, seg := range segs[:len(segs)-1] {
		next, ok := cur[seg].(map[string]any)
		if !ok {
			next = map[string]any{}
			cur[seg] = next
		}
		cur = next
	}
	cur[segs[len(segs)-1]] = value
	return json.Marshal(obj)
}
