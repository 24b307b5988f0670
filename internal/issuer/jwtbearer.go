package issuer

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// grantJWTBearer is RFC 7523 §2.1's grant type.
const grantJWTBearer = "urn:ietf:params:oauth:grant-type:jwt-bearer"

// Bounds of a JWT bearer assertion's lifetime; Google accepts at most an hour.
const (
	DefaultAssertionLifetime = 5 * time.Minute
	MaxAssertionLifetime     = time.Hour
)

// maxKeyFile bounds a service-account key file (Google's are about 2.3 KiB).
const maxKeyFile = 64 << 10

// Assertion is what a JWT bearer login signs. Empty fields take their defaults: iss from the key
// file, sub = iss (except with a key file), aud = the key file's token_uri or the token endpoint.
type Assertion struct {
	Issuer, Subject, Audience string
	Scopes                    []string
	// Lifetime of each assertion, within (0, MaxAssertionLifetime]; DefaultAssertionLifetime
	// when 0.
	Lifetime time.Duration
}

// serviceAccountKey is the part of a Google service-account key file the grant reads.
type serviceAccountKey struct {
	ClientEmail  string `json:"client_email"`
	PrivateKeyID string `json:"private_key_id"`
	PrivateKey   string `json:"private_key"`
	TokenURI     string `json:"token_uri"`
}

// bearerAssertion signs a fresh assertion for one JWT bearer grant request. The algorithm comes
// from the key's type, never from the inputs. Errors never show the key.
func (c *Client) bearerAssertion(req Request, endpoint string) (string, error) {
	a := Assertion{}
	if req.Assertion != nil {
		a = *req.Assertion
	}
	var (
		key      *signingKey
		err      error
		fromFile bool
	)
	if file := req.Inputs[InputServiceAccountKey]; file != "" {
		fromFile = true
		var sa serviceAccountKey
		if len(file) > maxKeyFile || json.Unmarshal([]byte(file), &sa) != nil || sa.ClientEmail == "" || sa.PrivateKey == "" {
			return "", configError("serviceAccountKeyKey: not a service-account key file (JSON with client_email, private_key_id, private_key and token_uri)")
		}
		if key, err = parseSigningKey(sa.PrivateKey); err != nil {
			return "", configError("serviceAccountKeyKey: private_key: " + err.Error())
		}
		if sa.PrivateKeyID != "" {
			key.kid = sa.PrivateKeyID
		}
		if a.Issuer == "" {
			a.Issuer = sa.ClientEmail
		}
		if a.Audience == "" {
			a.Audience = sa.TokenURI
		}
	} else if key, err = parseSigningKey(req.Inputs[InputPrivateKey]); err != nil {
		return "", configError("privateKeyKey: " + err.Error() + " (want a PEM RSA, EC P-256/P-384 or Ed25519 private key: PKCS#1, SEC1 or PKCS#8)")
	}
	if a.Issuer == "" {
		return "", configError("jwtBearer: no issuer (iss) for the assertion")
	}
	if a.Subject == "" && !fromFile {
		a.Subject = a.Issuer
	}
	if a.Audience == "" {
		a.Audience = endpoint
	}
	lifetime := a.Lifetime
	if lifetime <= 0 {
		lifetime = DefaultAssertionLifetime
	}
	lifetime = min(lifetime, MaxAssertionLifetime)
	if req.MaxLifetime > 0 {
		lifetime = min(lifetime, req.MaxLifetime)
	}
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", err
	}
	now := c.clock.Now()
	claims := jwt.MapClaims{"iss": a.Issuer, "aud": a.Audience, "iat": now.Unix(), "exp": now.Add(lifetime).Unix(), "jti": hex.EncodeToString(jti)}
	if a.Subject != "" {
		claims["sub"] = a.Subject
	}
	if len(a.Scopes) > 0 {
		claims["scope"] = strings.Join(a.Scopes, " ")
	}
	tok := jwt.NewWithClaims(key.method, claims)
	tok.Header["kid"] = key.kid
	signed, err := tok.SignedString(key.key)
	if err != nil {
		return "", configError("signing the assertion failed")
	}
	return signed, nil
}

func configError(reason string) *Error {
	return &Error{Class: ClassConfig, Op: "login", Reason: reason}
}

// CheckKeys parses the keys and certificate a request signs with, before any request is made.
// It returns the canonical input at fault (InputPrivateKey, InputServiceAccountKey,
// InputCertificate) and why, in words that never show the key and name the formats expected.
func CheckKeys(req Request) (input string, err error) {
	if file := req.Inputs[InputServiceAccountKey]; file != "" {
		var sa serviceAccountKey
		if len(file) > maxKeyFile || json.Unmarshal([]byte(file), &sa) != nil || sa.ClientEmail == "" || sa.PrivateKey == "" {
			return InputServiceAccountKey, errors.New("not a Google service-account key file (JSON with client_email, private_key_id, private_key and token_uri)")
		}
		if _, err := parseSigningKey(sa.PrivateKey); err != nil {
			return InputServiceAccountKey, fmt.Errorf("its private_key: %w (want a PEM private key: RSA of 2048 bits or more, EC P-256 or P-384, or Ed25519; PKCS#1, SEC1 or PKCS#8)", err)
		}
	}
	pemKey, ok := req.Inputs[InputPrivateKey]
	if !ok {
		return "", nil
	}
	key, err := parseSigningKey(pemKey)
	if err != nil {
		return InputPrivateKey, fmt.Errorf("%w (want a PEM private key: RSA of 2048 bits or more, EC P-256 or P-384, or Ed25519; PKCS#1, SEC1 or PKCS#8)", err)
	}
	if cert := req.Inputs[InputCertificate]; cert != "" {
		if _, err := certificateThumbprint(cert, key); err != nil {
			return InputCertificate, err
		}
	}
	return "", nil
}
