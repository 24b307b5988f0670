// Package renewal decides, as a pure function of the session, the last failure, the policy, the
// issuer's answers and the clock, whether a Credential waits, probes, refreshes, logs in or
// cannot go on, and when it looks again. The Credential controller only carries the decision out.
package renewal

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/tokenkeeper/tokenkeeper/internal/policy"
)

// Session is the current token's timing, as kept in the state Secret.
type Session struct {
	IssuedAt         time.Time
	ExpiresAt        time.Time
	RefreshExpiresAt time.Time // zero: unknown or never
	HasRefreshToken  bool
	// Start is when the session began with a full login.
	Start time.Time
	// InputsVersion identifies the inputs (Secrets, issuer, spec) the token was issued with.
	InputsVersion string
	// Rejected: the issuer's probe answered 401 or 403 to this token.
	Rejected bool
	// First: the Credential's first token. Its renewal is spread between a quarter of the way
	// to the planned time and the planned time, so that Credentials created together (a new
	// cluster, a GitOps sync) do not renew together for the rotations after: spread over most of
	// a period, they fill it.
	First bool
}

// FailureKind groups failures by how long to back off.
type FailureKind int

const (
	// Transient failures (5xx, timeouts, 429, malformed answers) retry in seconds to minutes.
	Transient FailureKind = iota
	// Persistent failures (rejected credentials, bad configuration) wait for a change, retrying
	// rarely in case the issuer was wrong. (A rejected refresh token is no failure: the
	// controller logs in at once.)
	Persistent
)

// Failure is the last failed attempt since the last success.
type Failure struct {
	At         time.Time
	Attempts   int32
	Kind       FailureKind
	RetryAfter time.Duration
	// InputsVersion is what the failed attempt used; a change means retry at once.
	InputsVersion string
}

// Action is what to do now.
type Action string

const (
	// Wait keeps the current token until Decision.At (probing it first when Decision.Probe).
	Wait Action = "Wait"
	// Login starts a new session with the Credential's inputs.
	Login Action = "Login"
	// Refresh renews the session with its refresh token (then logs in when Decision.Fallback and
	// the issuer rejects the refresh token or cannot refresh).
	Refresh Action = "Refresh"
	// Stop: nothing may be sent. The refreshToken login's one input was spent and the session has
	// no refresh token of its own: someone must put a new refresh token in the input Secret.
	Stop Action = "Stop"
)

// Verb is the action as logs, metrics, Events and the state Secret name an issuer call:
// "login" or "refresh".
func (a Action) Verb() string {
	switch a {
	case Login:
		return "login"
	case Refresh:
		return "refresh"
	}
	return strings.ToLower(string(a))
}

// Probe is what is known of the issuer's probe (a request that tells whether it still accepts a
// token).
type Probe struct {
	// Interval between probes of one token.
	Interval time.Duration
	// Last is when the current token was last probed; zero: never.
	Last time.Time
}

// Input is everything Decide looks at.
type Input struct {
	Now           time.Time
	Session       *Session // nil: no token yet
	Failure       *Failure // nil: no failure since the last success
	InputsVersion string
	Policy        policy.Effective
	CanRefresh    bool // the issuer has a refresh endpoint
	// JitterKey spreads renewals of many Credentials (the object's UID).
	JitterKey string

	// Failing: an attempt failed since the last success (status.failedAttempts > 0). Its retry
	// answers a renewal request, and no probe runs meanwhile.
	Failing bool
	// RenewRequested: someone asked for a renewal now (the renew-requested-at annotation holds a
	// value not acted on yet).
	RenewRequested bool
	// InputSpent: the Credential logs in with a refresh token from its input Secret, and that
	// token was already sent. It works once at most issuers and is never sent twice.
	InputSpent bool
	// Probe is the issuer's probe; nil: the issuer names none.
	Probe *Probe
	// ProbeRejected: the probe has just rejected the current token (before its expiry).
	ProbeRejected bool
	// Revocations are when replaced sessions are due to be revoked.
	Revocations []time.Time
}

// Decision says what to do and, for Wait, until when.
type Decision struct {
	Action Action
	// At is when to act next: the renewal time or the end of a backoff.
	At     time.Time
	Reason string
	// Fallback (Refresh): a refresh the issuer rejects, or cannot make, is followed by a login.
	// False when a login would resend a spent input refresh token.
	Fallback bool
	// Probe (Wait): ask the issuer's probe whether it still accepts the token first; when it
	// rejects it, decide again with Input.ProbeRejected.
	Probe bool
	// AnswersRenewRequest: this decision acts on the pending renewal request (record it).
	AnswersRenewRequest bool
	// Wake is when to look again: the earliest of At, the next probe, a due revocation and the
	// current token's expiry (status must turn Ready=False the moment it expires).
	Wake time.Time
}

// Decide is the renewal policy. It is total: every input yields a decision.
func Decide(in Input) Decision {
	d := decide(in)
	// A refreshToken login's input was sent already: a login carries the session on with the
	// session's own refresh token, and without one there is nothing left to send.
	if d.Action == Login && in.InputSpent {
		if in.Session == nil || !in.Session.HasRefreshToken || !in.CanRefresh {
			return Decision{Action: Stop, At: in.Now, Wake: in.Now, AnswersRenewRequest: d.AnswersRenewRequest,
				Reason: d.Reason + "; but the input refresh token was already sent and the session has no refresh token of its own"}
		}
		d.Action, d.Reason = Refresh, d.Reason+" (refreshing: the input refresh token was already sent)"
	}
	d.Fallback = d.Action == Refresh && !in.InputSpent
	d.AnswersRenewRequest = in.RenewRequested && (d.AnswersRenewRequest || d.Action != Wait)
	d.Wake = Wake(d.At, in)
	return d
}

// decide chooses the action and its time.
func decide(in Input) Decision {
	if in.ProbeRejected && in.Session != nil {
		return Decision{Action: Login, At: in.Now, Reason: "the issuer rejected the token"}
	}
	changed := in.Session != nil && in.Session.InputsVersion != in.InputsVersion
	if f := in.Failure; f != nil && f.InputsVersion == in.InputsVersion {
		if next := f.At.Add(Backoff(*f, in.JitterKey)); in.Now.Before(next) {
			return Decision{Action: Wait, At: next, Reason: "backing off after a failure"}
		}
	}
	switch {
	case in.Session == nil:
		return Decision{Action: Login, At: in.Now, Reason: "no token yet"}
	case changed:
		return Decision{Action: Login, At: in.Now, Reason: "inputs changed"}
	case in.Session.Rejected:
		return Decision{Action: Login, At: in.Now, Reason: "the issuer rejected the token"}
	}
	at := RenewalTime(*in.Session, in.Policy, in.JitterKey)
	if in.Now.Before(at) {
		if in.RenewRequested && !in.Failing {
			return requested(in)
		}
		return Decision{Action: Wait, At: at, Reason: "token is fresh", Probe: probeDue(in)}
	}
	s := in.Session
	switch {
	case !in.CanRefresh || !s.HasRefreshToken:
		return Decision{Action: Login, At: in.Now, Reason: "renewal due; no refresh token"}
	case !s.RefreshExpiresAt.IsZero() && !in.Now.Before(s.RefreshExpiresAt):
		return Decision{Action: Login, At: in.Now, Reason: "refresh token expired"}
	case in.Policy.MaxSessionAge > 0 && !in.Now.Before(s.Start.Add(in.Policy.MaxSessionAge)):
		return Decision{Action: Login, At: in.Now, Reason: "session reached its maximum age"}
	}
	return Decision{Action: Refresh, At: in.Now, Reason: "renewal due"}
}

// requested acts on a renewal request for a fresh token (one the issuer rejected was handled
// before): after the minimum interval from issue, with the session's refresh token when it has
// one.
func requested(in Input) Decision {
	const why = "renewal requested (tokenkeeper.io/renew-requested-at)"
	s := in.Session
	if floor := s.IssuedAt.Add(MinRenewalInterval); in.Now.Before(floor) {
		return Decision{Action: Wait, At: floor, Reason: "renewal requested: waiting for the minimum interval after issue", Probe: probeDue(in)}
	}
	if s.HasRefreshToken && in.CanRefresh {
		return Decision{Action: Refresh, At: in.Now, Reason: why, AnswersRenewRequest: true}
	}
	return Decision{Action: Login, At: in.Now, Reason: why, AnswersRenewRequest: true}
}

// probeDue: the issuer names a probe, no failure is being retried, and the token was last probed
// an interval ago (or never).
func probeDue(in Input) bool {
	p := in.Probe
	return p != nil && !in.Failing && (p.Last.IsZero() || !in.Now.Before(p.Last.Add(p.Interval)))
}

// Wake is when a Credential acting next at at looks again: the earliest of at, a due revocation,
// the next probe and just after the current token's expiry.
func Wake(at time.Time, in Input) time.Time {
	wake := at
	for _, r := range in.Revocations {
		if r.Before(wake) {
			wake = r
		}
	}
	if s := in.Session; s != nil {
		if expiry := s.ExpiresAt.Add(time.Second); expiry.After(in.Now) && expiry.Before(wake) {
			wake = expiry
		}
	}
	if p := in.Probe; p != nil && !p.Last.IsZero() {
		if next := p.Last.Add(p.Interval); next.Before(wake) {
			wake = next
		}
	}
	return wake
}

// MinRenewalInterval is the shortest time between a token's issue and its renewal, whatever its
// lifetime: an issuer that grants one-second tokens costs one login every five seconds, not a loop.
const MinRenewalInterval = 5 * time.Second

// RenewalTime is when a token is renewed: Schedule(...).At.
func RenewalTime(s Session, p policy.Effective, jitterKey string) time.Time {
	return Schedule(s, p, jitterKey).At
}

// Plan is when a token is renewed and the rule that decided it, for status.
type Plan struct {
	At time.Time
	// Lead is how long before the (policy-capped) expiry At falls, jitter included.
	Lead time.Duration
	// Rule says in words how the lead was chosen from the policy and the lifetime.
	Rule string
}

// Schedule decides when a token is renewed: before its (policy-capped) expiry by a margin of
// renewBefore (half the lifetime when renewBefore is not shorter than it) or a share of its
// lifetime, at least the minimum lead (but at most half the lifetime), at most 90% of the
// lifetime, moved by a per-token jitter of ±10% of the margin; no later than the session's
// maximum age; and never sooner than MinRenewalInterval after issue.
func Schedule(s Session, p policy.Effective, jitterKey string) Plan {
	expires := s.ExpiresAt
	capped := ""
	if p.MaxSessionDuration > 0 && expires.Sub(s.IssuedAt) > p.MaxSessionDuration {
		expires = s.IssuedAt.Add(p.MaxSessionDuration)
		capped = " (capped by maxSessionDuration)"
	}
	// However short the tokens an issuer hands out, a Credential renews at most every
	// MinRenewalInterval.
	floor := s.IssuedAt.Add(MinRenewalInterval)
	lifetime := expires.Sub(s.IssuedAt)
	lifetimeS := short(lifetime)
	plan := func(at time.Time, rule string) Plan { return Plan{At: at, Lead: expires.Sub(at), Rule: rule} }
	if lifetime <= 0 {
		return plan(floor, "the token was expired when issued: renewed after the minimum interval of "+MinRenewalInterval.String())
	}
	// Shares are taken of lifetime/100, not of lifetime*percent, which overflows for tokens that
	// live longer than about nine years.
	var rule string
	margin := p.RenewBefore
	switch {
	case margin == 0:
		margin = lifetime / 100 * time.Duration(p.BeforeExpiryPercent)
		rule = fmt.Sprintf("%d%% of the %s lifetime%s (%s)", p.BeforeExpiryPercent, lifetimeS, capped, short(margin))
	case margin >= lifetime:
		// An issuer granting less than renewBefore: renew at half the life, not in a loop.
		margin = lifetime / 2
		rule = fmt.Sprintf("half the %s lifetime%s, as renewBefore %s is not shorter than it", lifetimeS, capped, p.RenewBefore)
	default:
		rule = fmt.Sprintf("renewBefore %s of the %s lifetime%s", margin, lifetimeS, capped)
	}
	// The minimum lead covers the kubelet's delay, but never takes more than half of a short
	// token's life; and no margin leaves less than a tenth of the life in use.
	if lead := min(p.MinimumLead, lifetime/2); lead > margin {
		margin = lead
		if lead == p.MinimumLead {
			rule += fmt.Sprintf(", raised to the minimum lead %s", lead)
		} else {
			rule += fmt.Sprintf(", raised to half the lifetime (%s): the minimum lead %s would leave less", short(lead), p.MinimumLead)
		}
	}
	if most := lifetime - lifetime/10; margin > most {
		margin = most
		rule += fmt.Sprintf(", lowered to 90%% of the lifetime (%s)", short(most))
	}
	// The jitter is drawn again for each token (but the same for a token whatever the process,
	// so a restart moves nothing): Credentials created together drift apart rotation by
	// rotation instead of renewing in waves for ever.
	at := expires.Add(-margin).Add(jitter(jitterKey+"@"+s.IssuedAt.UTC().Format(time.RFC3339Nano), margin))
	rule += ", ±10% jitter"
	if s.First {
		// Deterministic per token, so a restart moves nothing.
		h := fnv.New64a()
		_, _ = h.Write([]byte(jitterKey + "@first@" + s.IssuedAt.UTC().Format(time.RFC3339Nano)))
		u := float64(h.Sum64()%1001) / 1000 // [0, 1]
		at = s.IssuedAt.Add(time.Duration(float64(at.Sub(s.IssuedAt)) * (0.25 + 0.75*u)))
		rule += ", the first token's renewal spread over the last three quarters of that wait"
	}
	if p.MaxSessionAge > 0 && !s.Start.IsZero() {
		if limit := s.Start.Add(p.MaxSessionAge); limit.Before(at) {
			at = limit
			rule = fmt.Sprintf("the session reaches its maximum age %s", p.MaxSessionAge)
			if half := s.IssuedAt.Add(lifetime / 2); at.Before(half) {
				at = half // never renew a token in the first half of its life
				rule += ", but not before half the token's life"
			}
		}
	}
	if at.Before(floor) {
		return plan(floor, rule+fmt.Sprintf(", but no sooner than %s after issue", MinRenewalInterval))
	}
	return plan(at, rule)
}

// short rounds a duration for reading: to the second from a minute up, else to 0.1 s.
func short(d time.Duration) time.Duration {
	if d >= time.Minute {
		return d.Round(time.Second)
	}
	return d.Round(100 * time.Millisecond)
}

// Backoff is the wait after a failure: exponential from 5 s to 5 min for transient failures and
// from 1 min to 1 h for persistent ones, ±20% jitter, never shorter than the issuer's Retry-After.
func Backoff(f Failure, jitterKey string) time.Duration {
	base, ceiling := 5*time.Second, 5*time.Minute
	if f.Kind == Persistent {
		base, ceiling = time.Minute, time.Hour
	}
	d := base
	for i := int32(1); i < f.Attempts && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, ceiling)
	d += jitter(jitterKey+strconv.Itoa(int(f.Attempts)), d*2)
	return max(d, f.RetryAfter)
}

// jitter is a deterministic offset in [-span/10, +span/10] derived from key.
func jitter(key string, span time.Duration) time.Duration {
	h := fnv.New64a()
	_, _ = h.Write([]byte(key))
	frac := float64(h.Sum64()%2001)/1000 - 1 // [-1, 1]
	return time.Duration(frac * float64(span) / 10)
}
