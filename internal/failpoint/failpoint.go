//go:build !chaos

// Package failpoint marks the places where a crash costs the most: between an issuer's answer
// and each write that records it. In a normal build Inject does nothing and costs a call; a
// manager built with `-tags chaos` (test/chaos) kills itself there with SIGKILL at the rates
// TOKENKEEPER_FAILPOINTS names.
package failpoint

// Inject is a point where the chaos build may die.
func Inject(string) {}
