package issuer

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// checkTokenSyntaxSpec is RFC 6750's b64token written out plainly, one byte at a time: the
// reference that CheckTokenSyntax, by its lookup table, must agree with error for error.
func checkTokenSyntaxSpec(tok string) error {
	if len(tok) > MaxTokenLength {
		return fmt.Errorf("longer than %d bytes", MaxTokenLength)
	}
	padding := false
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		switch {
		case c == '=':
			padding = true
		case padding:
			return fmt.Errorf("character after '=' padding at offset %d", i)
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9',
			c == '-', c == '.', c == '_', c == '~', c == '+', c == '/':
		default:
			return fmt.Errorf("illegal character at offset %d (RFC 6750 b64token)", i)
		}
	}
	if tok == "" || tok[0] == '=' {
		return errors.New("empty")
	}
	return nil
}

func TestCheckTokenSyntaxMatchesTheGrammar(t *testing.T) {
	same := func(tok string) {
		t.Helper()
		got, want := CheckTokenSyntax(tok), checkTokenSyntaxSpec(tok)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("CheckTokenSyntax(%q) = %v, want %v", tok, got, want)
		}
	}
	// Every byte in every position that matters: alone, first, inside, last, before and after
	// padding.
	for b := range 256 {
		c := string(rune(b))
		if b >= 0x80 {
			c = string([]byte{byte(b)})
		}
		for _, shape := range []string{"%s", "%sabc", "ab%scd", "abc%s", "ab=%s", "ab%s=", "=%s", "%s==", "a==%s="} {
			same(fmt.Sprintf(shape, c))
		}
	}
	for _, tok := range []string{"", "=", "==", "a", "a=", "a==", "a=b", strings.Repeat("a", MaxTokenLength), strings.Repeat("a", MaxTokenLength+1)} {
		same(tok)
	}
	// Random strings over an alphabet of valid bytes, padding and a few illegal ones.
	r := rand.New(rand.NewPCG(1, 2))
	const alphabet = "aZ09-._~+/==== \t\"\x00\xff,;"
	for range 100000 {
		b := make([]byte, r.IntN(12))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		same(string(b))
	}
}

// BenchmarkCheckTokenSyntax: a typical RS256 JWT's length.
func BenchmarkCheckTokenSyntax(b *testing.B) {
	tok := strings.Repeat("eyJhbGciOiJSUzI1NiIs", 35) + "."
	b.SetBytes(int64(len(tok)))
	for b.Loop() {
		if err := CheckTokenSyntax(tok); err != nil {
			b.Fatal(err)
		}
	}
}
