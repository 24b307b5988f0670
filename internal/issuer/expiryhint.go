package issuer

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
)

// Bounds of the hint a response without an expiry gets.
const (
	maxHintFields = 5   // fields listed
	maxHintList   = 320 // bytes of the listed fields
	maxHintPath   = 96  // longer paths are left out
	maxHintDepth  = 3   // objects looked into below the top level
	maxHintNumber = 24  // longer numbers are named, not shown
)

// expiryCandidate is a field of a response that may hold the token's expiry.
type expiryCandidate struct {
	path string
	// shown is how the field is listed: "path = 180", "path = \"2026-…\"", or, for a numeric
	// string, which could be a secret (a PIN, a numeric token), "path (a numeric string)".
	shown string
	// as is the mapping the value would do for: "expiresIn" (a lifetime in seconds), "expiresAt"
	// (a time ahead), or "" (neither: zero, a time past, …).
	as string
	// score orders the list: expiry-like names and usable values first.
	score int
}

// noExpiryError says that a response names no expiry, which numeric and date-like fields it holds
// (their paths; values only for numbers and times, never for other strings, which may be secrets),
// and the line of the Issuer that would read the likeliest one, with defaultLifetime as the
// alternative.
func noExpiryError(root map[string]any, m v1alpha1.ResponseMapping, opts ParseOptions, tok *Token) error {
	var b strings.Builder
	b.WriteString("response gives no expiry")
	for _, mapped := range []struct {
		name string
		path v1alpha1.JSONPath
	}{{"expiresAt", m.ExpiresAt}, {"expiresIn", m.ExpiresIn}} {
		if mapped.path != "" && opts.MappingField != "" {
			fmt.Fprintf(&b, " (%s.%s %s finds nothing)", opts.MappingField, mapped.name, mapped.path)
		}
	}
	b.WriteString(" and the token is not a JWT with exp")
	cands := expiryCandidates(root, opts.Now, tok.AccessToken, tok.RefreshToken)
	if len(cands) == 0 {
		b.WriteString("; it holds no other number or time: set defaultLifetime on the issuer")
		return errors.New(b.String())
	}
	b.WriteString("; numbers and times in it: ")
	listed := 0
	for i, c := range cands {
		if i == maxHintFields || listed+len(c.shown) > maxHintList {
			fmt.Fprintf(&b, " and %d more", len(cands)-i)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(c.shown)
		listed += len(c.shown) + 2
	}
	best := cands[0]
	switch {
	case opts.MappingField == "":
		b.WriteString(". This issuer has no response mapping: set defaultLifetime on the issuer")
	case best.as == "expiresIn":
		fmt.Fprintf(&b, ". If %s is the token's lifetime in seconds, add to the Issuer %s.expiresIn: %s; else set defaultLifetime on the issuer",
			best.path, opts.MappingField, best.path)
	case best.as == "expiresAt":
		fmt.Fprintf(&b, ". If %s is when the token expires, add to the Issuer %s.expiresAt: %s; else set defaultLifetime on the issuer",
			best.path, opts.MappingField, best.path)
	default:
		fmt.Fprintf(&b, ". None is a lifetime or a time ahead: map the expiry with %s.expiresIn (seconds) or expiresAt (a time) if the issuer sends one elsewhere, else set defaultLifetime on the issuer",
			opts.MappingField)
	}
	return errors.New(b.String())
}

// expiryCandidates lists the numbers, numeric strings and times of a response, down to
// maxHintDepth objects deep, that a mapping could name (paths of [A-Za-z0-9_-] segments), best
// first. Values equal to the tokens are left out.
func expiryCandidates(root map[string]any, now time.Time, tokens ...string) []expiryCandidate {
	var out []expiryCandidate
	var walk func(obj map[string]any, prefix string, depth int)
	walk = func(obj map[string]any, prefix string, depth int) {
		for k, v := range obj {
			path := prefix + k
			if !pathSegment(k) || len(path) > maxHintPath {
				continue
			}
			var c expiryCandidate
			switch x := v.(type) {
			case map[string]any:
				if depth < maxHintDepth {
					walk(x, path+".", depth+1)
				}
				continue
			case json.Number:
				c = numberCandidate(path, x.String(), now)
				// A number that reads as a token (a numeric token) is named, never shown.
				if len(x.String()) <= maxHintNumber && !isToken(x.String(), tokens) {
					c.shown = path + " = " + x.String()
				}
			case string:
				if isToken(x, tokens) {
					continue
				}
				if t, ok := parseTimeString(x); ok {
					c = expiryCandidate{shown: path + " = " + strconv.Quote(x)}
					if t.After(now.Add(MinLifetime)) && t.Before(now.Add(maxLifetime)) {
						c.as = "expiresAt"
					}
				} else if _, err := number(x); err == nil {
					c = numberCandidate(path, x, now)
				} else {
					continue // words, and perhaps secrets: never listed
				}
			default:
				continue
			}
			c.path = path
			if c.shown == "" {
				c.shown = path + " (a numeric string)"
			}
			c.score += nameScore(k)
			if c.as != "" {
				c.score++
			}
			out = append(out, c)
		}
	}
	walk(root, "", 0)
	sort.Slice(out, func(i, j int) bool {
		if out[i].score != out[j].score {
			return out[i].score > out[j].score
		}
		if di, dj := strings.Count(out[i].path, "."), strings.Count(out[j].path, "."); di != dj {
			return di < dj
		}
		return out[i].path < out[j].path
	})
	return out
}

// numberCandidate says what mapping a number would do for: below 10^8 a lifetime in seconds (as
// an auto-detected expiry name reads it), else an epoch time, if it lies ahead.
func numberCandidate(path, s string, now time.Time) expiryCandidate {
	c := expiryCandidate{path: path}
	f, err := number(s)
	switch {
	case err != nil:
	case f >= MinLifetime.Seconds() && f < 1e8:
		c.as = "expiresIn"
	case f >= 1e8:
		if t, err := parseTime(json.Number(s)); err == nil && t.After(now.Add(MinLifetime)) && t.Before(now.Add(maxLifetime)) {
			c.as = "expiresAt"
		}
	}
	return c
}

// nameScore favours names that say expiry (valid_for, ttl, lifetime, expires…) and disfavours
// those of the refresh token's expiry, which is no help for the access token's.
func nameScore(name string) int {
	n := strings.ToLower(name)
	score := 0
	for _, w := range []string{"exp", "valid", "ttl", "life", "until", "duration", "timeout", "lease", "second", "max_age", "maxage"} {
		if strings.Contains(n, w) {
			score = 2
			break
		}
	}
	if strings.Contains(n, "refresh") {
		score -= 3
	}
	return score
}

// pathSegment reports whether a key can be a segment of a JSONPath: [A-Za-z0-9_-]+.
func pathSegment(k string) bool {
	if k == "" {
		return false
	}
	for _, c := range k {
		if (c < 'A' || c > 'Z') && (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

func isToken(s string, tokens []string) bool {
	for _, t := range tokens {
		if t != "" && s == t {
			return true
		}
	}
	return false
}
