// Package names derives the names tokenkeeper gives to what it creates for a Credential: its
// state Secret and the label that ties Secrets to it. Every derived name must be valid for any
// Credential name the API server admits; FuzzNames checks that.
package names

import (
	"crypto/sha256"
	"encoding/hex"
)

// StateSuffix names a Credential's state Secret after it. A target Secret may not end in it
// (the CRD says so), so a Credential's token Secret never collides with another's state.
const StateSuffix = ".tokenkeeper-state"

// MaxCredentialName is the longest Credential name: 253 (the limit of Secret names) less the
// state Secret suffix. The CRD enforces it.
const MaxCredentialName = 253 - len(StateSuffix)

// StateSecret is the name of the state Secret of the Credential named name.
func StateSecret(name string) string { return name + StateSuffix }

// Label is a Credential's name as a label value: the name itself when it fits the 63-character
// limit of label values, else a 50-character prefix of it and a hash of the whole.
func Label(name string) string {
	if len(name) <= 63 {
		return name
	}
	sum := sha256.Sum256([]byte(name))
	return name[:50] + "-" + hex.EncodeToString(sum[:6])
}
