package issuer

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"

	"github.com/tokenkeeper/tokenkeeper/internal/egress"
	"github.com/tokenkeeper/tokenkeeper/internal/version"
)

// The HTTP transport every protocol shares: one request under every rule (scheme, policy,
// egress, no redirects, timeout, capped body, User-Agent), its failures classified.

// userAgentTransport names tokenkeeper on every request of an issuer's client: logins,
// discovery, introspection and key-set fetches alike.
type userAgentTransport struct{ next http.RoundTripper }

func (t userAgentTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("User-Agent", version.UserAgent())
	return t.next.RoundTrip(req)
}

// CloseIdleConnections lets Client.Close reach the wrapped transport: without it every client
// built for a reconcile would keep its idle connections open.
func (t userAgentTransport) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

type call struct {
	op          string
	method      string
	url         string
	contentType string
	body        []byte
	header      http.Header
	secrets     redactor
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// send performs one request under every transport rule: https unless allowed, the policy check,
// no redirects, a timeout and a capped body. Errors are classified; 4xx/5xx are left to the caller.
func (c *Client) send(ctx context.Context, in call) (*response, error) {
	resp, err := c.sendOnce(ctx, in)
	if c.trace != nil {
		c.trace(c.exchange(in, resp, err))
	}
	return resp, err
}

func (c *Client) sendOnce(ctx context.Context, in call) (*response, error) {
	u, err := url.Parse(in.url)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, &Error{Class: ClassConfig, Op: in.op, Reason: "endpoint is not an absolute http(s) URL"}
	}
	if u.Scheme == "http" && !c.spec.AllowInsecureHTTP {
		return nil, &Error{Class: ClassConfig, Op: in.op, Reason: fmt.Sprintf("%s uses plain http; use https or set allowInsecureHTTP", hostPath(u))}
	}
	if c.checkURL != nil {
		if err := c.checkURL(u); err != nil {
			return nil, &Error{Class: ClassConfig, Op: in.op, Reason: in.secrets.sanitize(err.Error())}
		}
	}
	var body io.Reader
	if in.body != nil {
		body = bytes.NewReader(in.body)
	}
	hreq, err := http.NewRequestWithContext(ctx, in.method, u.String(), body)
	if err != nil {
		return nil, &Error{Class: ClassConfig, Op: in.op, Reason: "building request failed"}
	}
	for name, value := range c.headers {
		hreq.Header.Set(name, value)
	}
	for name, values := range in.header {
		hreq.Header[name] = values
		in.secrets = in.secrets.with(values...)
	}
	if hreq.Header.Get("Accept") == "" { // GitHub's vnd.github+json, say
		hreq.Header.Set("Accept", "application/json")
	}
	if in.contentType != "" {
		hreq.Header.Set("Content-Type", in.contentType)
	}
	resp, err := c.http.Do(hreq)
	if errors.Is(err, egress.ErrDenied) { // refused before anything was sent
		return nil, &Error{Class: ClassConfig, Op: in.op, Reason: in.secrets.sanitize(transportReason(err, u))}
	}
	if reason, ok := tlsReason(err, u); ok { // only a configuration change fixes these
		return nil, &Error{Class: ClassConfig, Op: in.op, Reason: in.secrets.sanitize(reason)}
	}
	if err != nil {
		return nil, &Error{Class: ClassUnavailable, Op: in.op, Reason: in.secrets.sanitize(transportReason(err, u))}
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		return nil, redirectError(in.op, u, resp)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxBodySize+1))
	if err != nil {
		return nil, &Error{Class: ClassUnavailable, Op: in.op, StatusCode: resp.StatusCode, Reason: "reading the response failed: " + in.secrets.sanitize(transportReason(err, u))}
	}
	if len(data) > MaxBodySize {
		return nil, &Error{Class: ClassMalformedResponse, Op: in.op, StatusCode: resp.StatusCode, Reason: "response body is larger than 1 MiB"}
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: data}, nil
}

// tlsReason spells out a failed verification of the issuer's certificate, which no retry can
// fix: an unknown authority, a name mismatch, an expired or not yet valid certificate.
func tlsReason(err error, u *url.URL) (string, bool) {
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		verify   *tls.CertificateVerificationError
	)
	const fix = ": set caBundle or caBundleFrom on the issuer to the CA that signed it, or fix the issuer's certificate"
	switch {
	case err == nil:
		return "", false
	case errors.As(err, &unknown):
		return "TLS: the certificate of " + u.Host + " is signed by an authority tokenkeeper does not trust" + fix, true
	case errors.As(err, &hostname):
		return "TLS: the certificate of " + u.Host + " is not valid for that name (" + hostname.Error() + "): use a URL with a name the certificate holds, or fix the certificate", true
	case errors.As(err, &invalid):
		return "TLS: the certificate of " + u.Host + " is not valid: " + invalid.Error(), true
	case errors.As(err, &verify):
		return "TLS: the certificate of " + u.Host + " failed verification: " + verify.Err.Error() + fix, true
	}
	return "", false
}

func hostPath(u *url.URL) string { return u.Scheme + "://" + u.Host + u.Path }

func transportReason(err error, u *url.URL) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "no answer from " + u.Host + " in time"
	case errors.Is(err, context.Canceled):
		return "request canceled"
	}
	// url.Error repeats the method and URL; keep only the innermost cause.
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return "cannot reach " + u.Host + ": " + err.Error()
}

func redirectError(op string, from *url.URL, resp *http.Response) error {
	loc, _ := from.Parse(resp.Header.Get("Location"))
	e := &Error{Class: ClassConfig, Op: op, StatusCode: resp.StatusCode}
	switch {
	case loc == nil:
		e.Reason = "issuer answered with a redirect; redirects are not followed"
	case from.Scheme == "http" && loc.Scheme == "https" && loc.Hostname() == from.Hostname():
		e.Reason = fmt.Sprintf("issuer redirects plain http to %s: use https in the issuer URL", hostPath(loc))
	default:
		e.Reason = fmt.Sprintf("issuer redirects to %s; redirects are not followed: use that URL in the issuer if it is trusted", hostPath(loc))
	}
	return e
}

// classify turns a non-2xx response into an Error. rejected is the class of 400/401/403 for this
