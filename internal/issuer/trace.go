package issuer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strings"
)

// Exchange is one request to an issuer and its answer as a dry run shows them. It never holds a
// secret: header values, form and JSON fields are shown only when their name is one that never
// carries a secret (grant_type, scope, expires_in, …), every other value as its kind and length,
// and what is shown is redacted again against the request's inputs.
type Exchange struct {
	Op     string `json:"op"`
	Method string `json:"method"`
	// URL is the endpoint without its query.
	URL            string  `json:"url"`
	RequestHeaders []Field `json:"requestHeaders,omitempty"`
	RequestFields  []Field `json:"requestFields,omitempty"`
	// Status is the HTTP status; 0 when no answer came.
	Status         int     `json:"status,omitempty"`
	ResponseFields []Field `json:"responseFields,omitempty"`
	// Error is why no answer came (transport, TLS, policy), secrets redacted.
	Error string `json:"error,omitempty"`
}

// Field is one header or body field of an Exchange.
type Field struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// publicNames are the header and body fields that never carry a secret.
var publicNames = map[string]bool{
	"accept": true, "content-type": true, "user-agent": true, "x-github-api-version": true,
	"grant_type": true, "scope": true, "audience": true, "resource": true, "client_assertion_type": true,
	"subject_token_type": true, "requested_token_type": true, "actor_token_type": true, "issued_token_type": true,
	"token_type_hint": true, "token_type": true, "tokentype": true, "expires_in": true, "expiresin": true,
	"expires_at": true, "expiresat": true, "expires": true, "expiry": true, "expiration": true,
	"tokenexpiration": true, "tokenlifetime": true, "refresh_expires_in": true, "refresh_token_expires_in": true,
	"ext_expires_in": true, "lease_duration": true, "renewable": true, "not-before-policy": true,
	"repository_selection": true, "error": true, "error_description": true,
	// discovery documents
	"issuer": true, "token_endpoint": true, "jwks_uri": true, "revocation_endpoint": true, "introspection_endpoint": true,
	"authorization_endpoint": true, "userinfo_endpoint": true, "device_authorization_endpoint": true,
}

// maxTraceFields bounds the fields shown of one body.
const maxTraceFields = 64

func (c *Client) exchange(in call, resp *response, err error) Exchange {
	x := Exchange{Op: in.op, Method: in.method, URL: in.url}
	if u, perr := url.Parse(in.url); perr == nil {
		x.URL = hostPath(u)
	}
	secrets := in.secrets
	for _, v := range c.headers {
		secrets = secrets.with(v)
	}
	header := map[string]string{}
	for name := range c.headers {
		header[name] = "[redacted]"
	}
	for name, values := range in.header {
		header[name] = shown(name, strings.Join(values, ","), secrets)
	}
	if in.contentType != "" {
		header["Content-Type"] = in.contentType
	}
	names := make([]string, 0, len(header))
	for name := range header {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		x.RequestHeaders = append(x.RequestHeaders, Field{name, header[name]})
	}
	x.RequestFields = bodyFields(in.body, false, secrets)
	if err != nil {
		x.Error = secrets.sanitize(err.Error())
	}
	if resp != nil {
		x.Status = resp.status
		x.ResponseFields = bodyFields(resp.body, true, secrets)
	}
	return x
}

// shown is a value as a dry run may show it.
func shown(name, value string, secrets redactor) string {
	if publicNames[strings.ToLower(name)] {
		return secrets.sanitize(value)
	}
	return fmt.Sprintf("[redacted, %d bytes]", len(value))
}

// bodyFields lists a form or JSON body's fields. Numbers and booleans of a response are shown
// (lifetimes, flags); strings only under public names.
func bodyFields(body []byte, response bool, secrets redactor) []Field {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil
	}
	var out []Field
	if body[0] == '{' {
		var doc map[string]any
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		if dec.Decode(&doc) == nil {
			flatten("", doc, response, secrets, &out, 0)
			return out
		}
	}
	if form, err := url.ParseQuery(string(body)); err == nil && !response {
		keys := make([]string, 0, len(form))
		for k := range form {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys[:min(len(keys), maxTraceFields)] {
			out = append(out, Field{secrets.sanitize(k), shown(k, form.Get(k), secrets)})
		}
		return out
	}
	return []Field{{"(body)", fmt.Sprintf("[not shown, %d bytes]", len(body))}}
}

func flatten(prefix string, obj map[string]any, response bool, secrets redactor, out *[]Field, depth int) {
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if len(*out) >= maxTraceFields {
			return
		}
		name := secrets.sanitize(prefix + k)
		switch v := obj[k].(type) {
		case map[string]any:
			if depth < 3 {
				flatten(prefix+k+".", v, response, secrets, out, depth+1)
				continue
			}
			*out = append(*out, Field{name, "[object]"})
		case []any:
			*out = append(*out, Field{name, fmt.Sprintf("[list of %d]", len(v))})
		case string:
			*out = append(*out, Field{name, shown(k, v, secrets)})
		case nil:
			*out = append(*out, Field{name, "null"})
		default: // json.Number or bool
			s := fmt.Sprint(v)
			if response || publicNames[strings.ToLower(k)] {
				*out = append(*out, Field{name, secrets.sanitize(s)})
			} else {
				*out = append(*out, Field{name, fmt.Sprintf("[redacted, %d bytes]", len(s))})
			}
		}
	}
}
