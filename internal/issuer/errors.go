package issuer

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode"
)

// Class tells the controller what to do about a failure.
type Class string

const (
	// ClassInvalidCredentials: the issuer refused the login (400/401/403, invalid_grant). Retrying
	// will not help until someone fixes the inputs.
	ClassInvalidCredentials Class = "InvalidCredentials"
	// ClassRefreshRejected: the refresh token is expired, revoked or reused; log in again.
	ClassRefreshRejected Class = "RefreshRejected"
	// ClassRateLimited: 429; retry after RetryAfter.
	ClassRateLimited Class = "RateLimited"
	// ClassUnavailable: 5xx, timeouts and connection errors; retry with backoff.
	ClassUnavailable Class = "Unavailable"
	// ClassMalformedResponse: the issuer answered something that is not a usable token.
	ClassMalformedResponse Class = "MalformedResponse"
	// ClassConfig: the issuer configuration cannot work (plain http, a redirect, a bad template).
	ClassConfig Class = "InvalidConfiguration"
)

// Sentinel errors, one per class, for errors.Is.
var (
	ErrInvalidCredentials = errors.New("invalid credentials")
	ErrRefreshRejected    = errors.New("refresh rejected")
	ErrRateLimited        = errors.New("rate limited")
	ErrUnavailable        = errors.New("issuer unavailable")
	ErrMalformedResponse  = errors.New("malformed response")
	ErrConfig             = errors.New("invalid issuer configuration")
	// ErrUnsupported is returned when the issuer has no endpoint for an operation.
	ErrUnsupported = errors.New("operation not supported by issuer")
)

var sentinels = map[Class]error{
	ClassInvalidCredentials: ErrInvalidCredentials,
	ClassRefreshRejected:    ErrRefreshRejected,
	ClassRateLimited:        ErrRateLimited,
	ClassUnavailable:        ErrUnavailable,
	ClassMalformedResponse:  ErrMalformedResponse,
	ClassConfig:             ErrConfig,
}

// Error is a classified failure of one operation. Its message holds the issuer's own reason,
// truncated and with every submitted or returned secret removed.
type Error struct {
	Class Class
	// Op is the operation: login, refresh, revoke, inspect or discovery.
	Op string
	// StatusCode is the HTTP status, 0 when no response arrived.
	StatusCode int
	// RetryAfter is the issuer's Retry-After, when it sent one.
	RetryAfter time.Duration
	// Reason is the issuer's explanation, safe to show.
	Reason string
	// Err is the underlying cause, safe to show.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Op)
	b.WriteString(": ")
	b.WriteString(sentinels[e.Class].Error())
	if e.StatusCode != 0 {
		fmt.Fprintf(&b, " (HTTP %d)", e.StatusCode)
	}
	if e.Reason != "" {
		b.WriteString(": ")
		b.WriteString(e.Reason)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, " (retry after %s)", e.RetryAfter)
	}
	return b.String()
}

// Is matches the class sentinel.
func (e *Error) Is(target error) bool { return sentinels[e.Class] == target }

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// ClassOf returns the class of err, or "" when err is not an issuer error.
func ClassOf(err error) Class {
	var e *Error
	if errors.As(err, &e) {
		return e.Class
	}
	return ""
}

// RetryAfterOf returns the Retry-After carried by err, or 0.
func RetryAfterOf(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

const (
	// maxReasonLen caps the issuer's own words in an error.
	maxReasonLen = 200
	// maxParseReasonLen caps a MalformedResponse reason: the issuer's words, what was wrong and
	// the hint that fixes it, well within an Event's 1 KiB.
	maxParseReasonLen = 720
)

// redactor removes secret values from text that may echo them: issuer error bodies, template
// errors, URL errors. It holds every secret in each encoding it is sent in.
type redactor []string

// with adds values and the encodings they travel in: URL-encoded (forms, Basic credentials),
// JSON-escaped and, for Authorization header values, the credentials after the scheme.
func (r redactor) with(values ...string) redactor {
	for _, v := range values {
		if v == "" {
			continue
		}
		r = append(r, v, url.QueryEscape(v), url.PathEscape(v))
		if b, err := json.Marshal(v); err == nil {
			r = append(r, string(b[1:len(b)-1]))
		}
		if _, cred, ok := strings.Cut(v, " "); ok {
			r = append(r, cred)
		}
	}
	return r
}

func (r redactor) redact(s string) string {
	for _, v := range r {
		if len(v) >= 3 {
			s = strings.ReplaceAll(s, v, "[redacted]")
		}
	}
	return s
}

// sanitize makes issuer-provided text safe to show: secrets removed, control characters dropped,
// length capped.
func (r redactor) sanitize(s string) string { return r.sanitizeN(s, maxReasonLen) }

// sanitizeN is sanitize with a cap of n bytes. Format characters (bidi overrides, zero-width
// joiners) go too: they could make a message read other than it is.
func (r redactor) sanitizeN(s string, n int) string {
	s = r.redact(s)
	s = strings.Map(func(c rune) rune {
		switch {
		case unicode.IsControl(c):
			return ' '
		case unicode.Is(unicode.Cf, c):
			return -1
		}
		return c
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		cut := n
		for cut > 0 && !utf8Start(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }

// MayHaveSpent reports whether a login or refresh that ended with err may have consumed the
// refresh token it sent, so that sending it again could trip the issuer's reuse detection. It is
// true after a success, after a rejection (the token is dead anyway), and whenever the request
// left but no usable answer came back (a timeout, a dropped connection, a 2xx that cannot be
// parsed): the issuer may have rotated the token and the answer was lost. It is false when the
// request never left (configuration, discovery) or the issuer answered with an error status that
// grants nothing (429, 5xx, 404).
func MayHaveSpent(err error) bool {
	if err == nil {
		return true
	}
	var e *Error
	if !errors.As(err, &e) || e.Op == "discovery" {
		return false
	}
	switch e.Class {
	case ClassMalformedResponse:
		return true
	case ClassUnavailable:
		return e.StatusCode == 0 || e.StatusCode/100 == 2 // sent, and the answer never arrived whole
	case ClassRefreshRejected, ClassInvalidCredentials:
		return e.StatusCode != 0
	}
	return false
}
