package issuer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// assertionLifetime is how long a client assertion is valid: long enough for one request, short
// enough that a captured one is soon useless (RFC 7523 asks for a short expiry; issuers cap it
// at 5 minutes or less).
const assertionLifetime = 2 * time.Minute

// clientAssertionType is RFC 7523's client_assertion_type for a JWT.
const clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// signingKey is a parsed private key with the JWT algorithm it signs with and its key ID.
type signingKey struct {
	key    crypto.Signer
	method jwt.SigningMethod
	kid    string
}

// parseSigningKey reads a PEM private key (PKCS#1 or PKCS#8 RSA of at least 2048 bits, SEC1 or
// PKCS#8 EC P-256/P-384, PKCS#8 Ed25519). Errors never show the key.
func parseSigningKey(pemText string) (*signingKey, error) {
	block, _ := pem.Decode([]byte(pemText))
	if block == nil {
		return nil, errors.New("not a PEM private key")
	}
	var parsed any
	var err error
	switch block.Type {
	case "RSA PRIVATE KEY":
		parsed, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		parsed, err = x509.ParseECPrivateKey(block.Bytes)
	case "PRIVATE KEY":
		parsed, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("a PEM block of type %q is not a private key", block.Type)
	}
	if err != nil {
		return nil, errors.New("the private key does not parse")
	}
	k := &signingKey{}
	switch key := parsed.(type) {
	case *rsa.PrivateKey:
		if key.N.BitLen() < 2048 {
			return nil, errors.New("an RSA key must have at least 2048 bits")
		}
		k.key, k.method = key, jwt.SigningMethodRS256
	case *ecdsa.PrivateKey:
		switch key.Curve.Params().Name {
		case "P-256":
			k.method = jwt.SigningMethodES256
		case "P-384":
			k.method = jwt.SigningMethodES384
		default:
			return nil, errors.New("an EC key must be on P-256 or P-384")
		}
		k.key = key
	case ed25519.PrivateKey:
		k.key, k.method = key, jwt.SigningMethodEdDSA
	default:
		return nil, errors.New("unsupported private key type")
	}
	if k.kid, err = thumbprint(k.key.Public()); err != nil {
		return nil, err
	}
	return k, nil
}

// thumbprint is the RFC 7638 SHA-256 JWK thumbprint of a public key, base64url: the key ID an
// issuer computes from the public key it was given.
func thumbprint(pub crypto.PublicKey) (string, error) {
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	var members map[string]string
	switch k := pub.(type) {
	case *rsa.PublicKey:
		members = map[string]string{"e": b64(big.NewInt(int64(k.E)).Bytes()), "kty": "RSA", "n": b64(k.N.Bytes())}
	case *ecdsa.PublicKey:
		raw, err := k.Bytes() // 0x04 || X || Y, each coordinate padded to the curve size
		if err != nil {
			return "", err
		}
		size := (len(raw) - 1) / 2
		members = map[string]string{"crv": k.Curve.Params().Name, "kty": "EC", "x": b64(raw[1 : 1+size]), "y": b64(raw[1+size:])}
	case ed25519.PublicKey:
		members = map[string]string{"crv": "Ed25519", "kty": "OKP", "x": b64(k)}
	default:
		return "", errors.New("unsupported public key type")
	}
	canonical, err := json.Marshal(members) // encoding/json sorts map keys, as RFC 7638 requires
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(canonical)
	return b64(sum[:]), nil
}

// certificateThumbprint is the x5t#S256 header value (RFC 7515 §4.1.8) of a PEM certificate,
// which must be the private key's: Entra ID identifies a certificate credential by it. Errors
// never show the certificate.
func certificateThumbprint(pemText string, key *signingKey) (string, error) {
	block, _ := pem.Decode([]byte(pemText))
	if block == nil || block.Type != "CERTIFICATE" {
		return "", errors.New("not a PEM certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return "", errors.New("the certificate does not parse")
	}
	pub, ok := key.key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return "", errors.New("the certificate is not for the private key in privateKeyKey")
	}
	sum := sha256.Sum256(cert.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:]), nil
}

// clientAssertion signs a private_key_jwt client assertion (RFC 7523 §2.2, OIDC Core §9):
// iss = sub = the client ID, aud = the token endpoint (or the audience configured), a unique
// jti, a short exp, the key's thumbprint as kid and, with a certificate, its x5t#S256.
func clientAssertion(key *signingKey, clientID, audience, x5t string, now time.Time, maxLifetime time.Duration) (string, error) {
	lifetime := assertionLifetime
	if maxLifetime > 0 {
		lifetime = min(lifetime, maxLifetime)
	}
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", err
	}
	tok := jwt.NewWithClaims(key.method, jwt.RegisteredClaims{
		Issuer: clientID, Subject: clientID, Audience: jwt.ClaimStrings{audience}, ID: hex.EncodeToString(jti),
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(lifetime)),
	})
	tok.Header["kid"] = key.kid
	if x5t != "" {
		tok.Header["x5t#S256"] = x5t
	}
	return tok.SignedString(key.key)
}
