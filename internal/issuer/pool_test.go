package issuer_test

import (
	"fmt"
	"testing"

	"github.com/tokenkeeper/tokenkeeper/api/v1alpha1"
	"github.com/tokenkeeper/tokenkeeper/internal/issuer"
)

// The pool returns one client per key and never holds more than its bound.
func TestPoolSharesAndBounds(t *testing.T) {
	p := issuer.NewPool(3)
	cfg := issuer.Config{Spec: v1alpha1.IssuerSpec{URL: "https://login.example.com/token", JSON: &v1alpha1.JSONLogin{}}}
	a, _ := p.Get("a", cfg)
	if again, _ := p.Get("a", cfg); again != a {
		t.Fatal("the same key built a second client")
	}
	for i := range 10 {
		if _, err := p.Get(fmt.Sprint("k", i), cfg); err != nil {
			t.Fatal(err)
		}
	}
	if n := p.Len(); n != 3 {
		t.Fatalf("%d clients held, bound 3", n)
	}
	if again, _ := p.Get("a", cfg); again == a {
		t.Fatal("an evicted client came back")
	}
}
