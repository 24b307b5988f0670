package credential

import "testing"

// Slots bound issuer calls per namespace and per issuer; a Credential that found none waits
// without API requests until one frees, and other namespaces and issuers are unaffected.
func TestCallSlots(t *testing.T) {
	s := newCallSlots(2)
	hang := []string{"namespace/a", "issuer/Issuer/a/hang"}
	r1, ok1 := s.take("a/1", hang...)
	_, ok2 := s.take("a/2", hang...)
	_, ok3 := s.take("a/3", hang...)
	if !ok1 || !ok2 || ok3 {
		t.Fatalf("two calls may be in flight, the third waits: got %t %t %t", ok1, ok2, ok3)
	}
	if !s.stillWaiting("a/3", hang...) || s.stillWaiting("a/1", hang...) {
		t.Fatalf("only the Credential that found no slot waits")
	}
	if _, ok := s.take("b/1", "namespace/b", "issuer/Issuer/b/ok"); !ok {
		t.Fatalf("another namespace at another issuer is not held up")
	}
	if _, ok := s.take("c/1", "namespace/c", "issuer/Issuer/a/hang"); ok {
		t.Fatalf("the issuer's own bound holds across namespaces")
	}
	r1()
	if s.stillWaiting("a/3", hang...) {
		t.Fatalf("a freed slot ends the wait")
	}
	if _, ok := s.take("a/3", hang...); !ok || s.stillWaiting("a/3", hang...) {
		t.Fatalf("the waiting Credential takes the freed slot and stops waiting")
	}
	s.forget("c/1")
	if len(s.waiting) != 0 {
		t.Fatalf("waiting holds %v after every Credential got a slot or went", s.waiting)
	}
}
