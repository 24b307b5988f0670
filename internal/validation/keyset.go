package validation

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

const (
	// maxJWKSSize caps a key set document.
	maxJWKSSize = 256 << 10
	// minRefreshInterval rate-limits refreshes triggered by unknown key IDs, and is the shortest
	// lifetime a key set's Cache-Control can give it: a hostile or broken JWKS endpoint that
	// says max-age=0 or no-store is fetched at most once per interval.
	minRefreshInterval = 10 * time.Second
	// maxHonouredAge is the longest Cache-Control lifetime a key set keeps: the TokenValidator
	// reconciler fetches every key set this often anyway, so a longer max-age changes nothing.
	maxHonouredAge = 10 * time.Minute
	// jwksTimeout bounds one key set fetch.
	jwksTimeout = 5 * time.Second
)

// kidPattern is what a key ID may look like: no path characters, bounded.
var kidPattern = regexp.MustCompile(`^[A-Za-z0-9._~+=-]{1,128}$`)

// KeySet is one issuer's JSON Web Key Set, fetched from a URL fixed in configuration (never from
// a token), refreshed on an unknown key ID at most once per minRefreshInterval.
//
// When the key set's response says how long it may be kept (Cache-Control max-age, less any
// Age, or no-store/no-cache for "not at all") and that is shorter than the periodic refresh, the
// keys expire then: the first lookup after that fetches the key set again before answering, so a
// key the issuer removed stops verifying tokens within max(max-age, minRefreshInterval). If that
// fetch fails, the keys at hand are kept (an unreachable issuer does not fail every request) and
// the fetch is retried at most once per minRefreshInterval.
type KeySet struct {
	url    string
	client *http.Client
	clock  clock.PassiveClock
	// OnRefresh is called after each fetch attempt, for metrics. Optional.
	OnRefresh func(err error)

	mu        sync.RWMutex
	keys      map[string]PublicKey
	fetchedAt time.Time
	// expiresAt is when the keys must be fetched again before use, from the response's
	// Cache-Control; zero when it gave no lifetime shorter than maxHonouredAge.
	expiresAt time.Time

	refreshMu   sync.Mutex
	lastAttempt time.Time
}

// NewKeySet returns a key set for url, fetched with client (which carries the issuer's CA).
func NewKeySet(url string, client *http.Client, clk clock.PassiveClock) *KeySet {
	return &KeySet{url: url, client: client, clock: clk, keys: map[string]PublicKey{}}
}

// Len is the number of keys.
func (k *KeySet) Len() int {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return len(k.keys)
}

// FetchedAt is when the keys were last fetched successfully.
func (k *KeySet) FetchedAt() time.Time {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.fetchedAt
}

// PublicKey is one verification key of a key set.
type PublicKey struct {
	// Key is an *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey.
	Key any
	// Alg is the algorithm the key set publishes the key for (its "alg"); empty when it names none.
	Alg string
}

// Accepts reports whether a token signed with alg may be verified with this key: the algorithm
// must be the one the key is published for (if any) and fit the key's type and curve, so that a
// key published for RS256 never verifies PS256, nor a P-384 key ES256.
func (p PublicKey) Accepts(alg string) bool {
	if p.Alg != "" && p.Alg != alg {
		return false
	}
	switch key := p.Key.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		return alg == map[string]string{"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}[key.Curve.Params().Name]
	case ed25519.PublicKey:
		return alg == "EdDSA" || alg == "Ed25519"
	}
	return false
}

// ExpiresAt is when the keys at hand stop being used without fetching them again, as their
// response's Cache-Control said; zero when it set no lifetime shorter than the periodic refresh.
// Whatever was verified with these keys must not be trusted past it.
func (k *KeySet) ExpiresAt() time.Time {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.expiresAt
}

// Lookup returns the key for kid. An unknown kid triggers one rate-limited refresh, and so do
// keys past their Cache-Control lifetime; requests for known, fresh keys never wait for it.
func (k *KeySet) Lookup(ctx context.Context, kid string) (PublicKey, error) {
	// Only kids that match kidPattern are stored, so a known kid needs no pattern match.
	key, ok, expired := k.get(kid)
	if ok && !expired {
		return key, nil
	}
	if !ok && !kidPattern.MatchString(kid) {
		return PublicKey{}, errors.New("malformed key ID")
	}
	if err := k.refresh(ctx, false); err != nil && !ok {
		return PublicKey{}, err
	}
	// A failed refresh of expired keys keeps them (see KeySet).
	if key, ok, _ := k.get(kid); ok {
		return key, nil
	}
	return PublicKey{}, errors.New("unknown key ID")
}

func (k *KeySet) get(kid string) (key PublicKey, ok, expired bool) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	key, ok = k.keys[kid]
	return key, ok, !k.expiresAt.IsZero() && !k.clock.Now().Before(k.expiresAt)
}

// Refresh fetches the key set now (the reconciler's periodic refresh).
func (k *KeySet) Refresh(ctx context.Context) error { return k.refresh(ctx, true) }

func (k *KeySet) refresh(ctx context.Context, force bool) error {
	k.refreshMu.Lock()
	defer k.refreshMu.Unlock()
	if !force && k.clock.Since(k.lastAttempt) < minRefreshInterval {
		return nil // rate limited: answer with the keys at hand
	}
	k.lastAttempt = k.clock.Now()
	keys, lifetime, err := k.fetch(ctx)
	if k.OnRefresh != nil {
		k.OnRefresh(err)
	}
	if err != nil {
		return err
	}
	now := k.clock.Now()
	var expiresAt time.Time
	if lifetime < maxHonouredAge {
		expiresAt = now.Add(max(lifetime, minRefreshInterval))
	}
	k.mu.Lock()
	k.keys, k.fetchedAt, k.expiresAt = keys, now, expiresAt
	k.mu.Unlock()
	return nil
}

// cacheLifetime is how long a response may be used, from its Cache-Control (RFC 9111 5.2.2):
// 0 for no-store or no-cache, max-age less the Age it already spent in caches, or
// maxHonouredAge when it says nothing (or nothing readable) about it. The smallest max-age wins.
func cacheLifetime(h http.Header) time.Duration {
	lifetime, found := maxHonouredAge, false
	for _, line := range h.Values("Cache-Control") {
		for d := range strings.SplitSeq(line, ",") {
			name, value, _ := strings.Cut(strings.TrimSpace(d), "=")
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "no-store", "no-cache":
				return 0
			case "max-age":
				secs, err := strconv.ParseInt(strings.Trim(strings.TrimSpace(value), `"`), 10, 64)
				if err != nil || secs < 0 {
					continue
				}
				if a := time.Duration(min(secs, int64(maxHonouredAge/time.Second))) * time.Second; !found || a < lifetime {
					lifetime, found = a, true
				}
			}
		}
	}
	if !found {
		return maxHonouredAge
	}
	if age, err := strconv.ParseInt(strings.TrimSpace(h.Get("Age")), 10, 64); err == nil && age > 0 {
		lifetime -= time.Duration(min(age, int64(maxHonouredAge/time.Second))) * time.Second
	}
	return max(lifetime, 0)
}

// fetch reads the key set and how long its response may be used.
func (k *KeySet) fetch(ctx context.Context) (map[string]PublicKey, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, jwksTimeout)
	defer cancel()
	// k.url is the issuer's key set URL from its spec: a request only picks whose key set this is.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil) //nolint:gosec // G704: see above
	if err != nil {
		return nil, 0, fmt.Errorf("fetching key set: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.client.Do(req) //nolint:gosec // G704: the issuer's key set URL, above
	if err != nil {
		return nil, 0, fmt.Errorf("fetching key set: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("fetching key set: HTTP %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSSize+1))
	if err != nil {
		return nil, 0, fmt.Errorf("reading key set: %w", err)
	}
	if len(body) > maxJWKSSize {
		return nil, 0, errors.New("key set larger than 256 KiB")
	}
	keys, err := ParseJWKS(body)
	return keys, cacheLifetime(resp.Header), err
}

type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Crv string `json:"crv"`
	N   string `json:"n"`
	E   string `json:"e"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// ParseJWKS reads the signature keys of a JWKS document (RSA, EC P-256/384/521, Ed25519); keys
// without a valid kid, for encryption, of other types, or published for an algorithm that does not
// fit their type are skipped.
func ParseJWKS(body []byte) (map[string]PublicKey, error) {
	var doc struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, errors.New("key set is not JSON")
	}
	keys := map[string]PublicKey{}
	for _, j := range doc.Keys {
		if !kidPattern.MatchString(j.Kid) || (j.Use != "" && j.Use != "sig") {
			continue
		}
		key, err := j.publicKey()
		if err != nil {
			continue
		}
		if pk := (PublicKey{Key: key, Alg: j.Alg}); j.Alg == "" || pk.Accepts(j.Alg) {
			keys[j.Kid] = pk
		}
	}
	return keys, nil
}

func (j jwk) publicKey() (any, error) {
	b := func(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }
	switch j.Kty {
	case "RSA":
		n, err1 := b(j.N)
		e, err2 := b(j.E)
		if err := errors.Join(err1, err2); err != nil || len(n) < 256 || len(e) == 0 || len(e) > 4 {
			return nil, errors.New("bad RSA key (at least 2048 bits)")
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}, nil
	case "EC":
		var curve elliptic.Curve
		switch j.Crv {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		case "P-521":
			curve = elliptic.P521()
		default:
			return nil, errors.New("unsupported curve")
		}
		x, err1 := b(j.X)
		y, err2 := b(j.Y)
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		// Reject points not on the curve: go through the uncompressed encoding.
		size := (curve.Params().BitSize + 7) / 8
		if len(x) != size || len(y) != size {
			return nil, errors.New("bad EC coordinates")
		}
		raw := append(append([]byte{4}, x...), y...)
		pk, err := ecdsa.ParseUncompressedPublicKey(curve, raw)
		if err != nil {
			return nil, err
		}
		return pk, nil
	case "OKP":
		x, err := b(j.X)
		if err != nil || j.Crv != "Ed25519" || len(x) != ed25519.PublicKeySize {
			return nil, errors.New("bad Ed25519 key")
		}
		return ed25519.PublicKey(x), nil
	}
	return nil, errors.New("unsupported key type")
}
