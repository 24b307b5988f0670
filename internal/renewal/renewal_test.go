package renewal

import (
	"strconv"
	"testing"
	"time"

	"github.com/tokenkeeper/tokenkeeper/internal/policy"
)

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func defaults() policy.Effective {
	return policy.Effective{BeforeExpiryPercent: 33, MinimumLead: 2 * time.Minute}
}

func TestRenewalTime(t *testing.T) {
	cases := map[string]struct {
		reason   string
		lifetime time.Duration
		policy   func(*policy.Effective)
		start    time.Duration // session start relative to issue (negative = earlier)
		wantLead time.Duration // expected time before expiry, ±10% of it
	}{
		"Hour":     {reason: "A third of an hour ahead.", lifetime: time.Hour, wantLead: 20 * time.Minute},
		"TenHours": {reason: "Seed 000's 10 h token renews 3.3 h early.", lifetime: 10 * time.Hour, wantLead: 198 * time.Minute},
		"ShortTokenGetsMinimumLead": {
			reason:   "A 5-minute token: 33% is 99 s, below the 2-minute lead the kubelet needs.",
			lifetime: 5 * time.Minute, wantLead: 2 * time.Minute,
		},
		"VeryShortTokenClamped": {
			reason:   "A 20 s token cannot get 2 minutes of lead: half its life, so no renewal loop.",
			lifetime: 20 * time.Second, wantLead: 10 * time.Second,
		},
		"LargeShareKept": {
			reason:   "A 60% share is honoured, not clamped to half the lifetime.",
			lifetime: time.Hour, wantLead: 36 * time.Minute,
			policy: func(p *policy.Effective) { p.BeforeExpiryPercent = 60 },
		},
		"RenewBeforeLongerThanLifetime": {
			reason:   "An issuer granting 10 min against renewBefore 1h: renew at half the life, no loop.",
			lifetime: 10 * time.Minute, wantLead: 5 * time.Minute,
			policy: func(p *policy.Effective) { p.RenewBefore = time.Hour },
		},
		"RenewBeforeLongerThanShortToken": {
			reason:   "A 35 s token against renewBefore 1h used to renew every 3.5 s: now at half its life.",
			lifetime: 35 * time.Second, wantLead: 17500 * time.Millisecond,
			policy: func(p *policy.Effective) { p.RenewBefore = time.Hour },
		},
		"TinyTokenFloor": {
			reason:   "A 2 s token is renewed no sooner than MinRenewalInterval after issue.",
			lifetime: 2 * time.Second, wantLead: -3 * time.Second,
		},
		"HundredYears": {
			reason:   "A 100-year token renews a third of its life early, without overflow.",
			lifetime: 100 * 365 * 24 * time.Hour, wantLead: 33 * 365 * 24 * time.Hour,
		},
		"HundredYearsFixedLead": {
			reason:   "A 100-year token with renewBefore 1h.",
			lifetime: 100 * 365 * 24 * time.Hour, wantLead: time.Hour,
			policy: func(p *policy.Effective) { p.RenewBefore = time.Hour },
		},
		"RenewBefore": {
			reason: "A fixed lead overrides the percentage.", lifetime: time.Hour, wantLead: 15 * time.Minute,
			policy: func(p *policy.Effective) { p.RenewBefore = 15 * time.Minute },
		},
		"MaxSessionDurationCapsLifetime": {
			reason:   "An issuer granting 24 h under an 8 h maximum is renewed as if it lived 8 h.",
			lifetime: 24 * time.Hour, wantLead: 24*time.Hour - 8*time.Hour + 8*time.Hour*33/100,
			policy: func(p *policy.Effective) { p.MaxSessionDuration = 8 * time.Hour },
		},
		"MaxSessionAge": {
			reason:   "A session started 23 h ago under a 24 h maximum age renews at 24 h, early.",
			lifetime: 4 * time.Hour, start: -23 * time.Hour, wantLead: 3 * time.Hour,
			policy: func(p *policy.Effective) { p.MaxSessionAge = 24 * time.Hour },
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			p := defaults()
			if tc.policy != nil {
				tc.policy(&p)
			}
			s := Session{IssuedAt: t0, ExpiresAt: t0.Add(tc.lifetime), Start: t0.Add(tc.start)}
			at := RenewalTime(s, p, "uid-1")
			lead := s.ExpiresAt.Sub(at)
			tol := (tc.wantLead / 10).Abs()
			if name == "MaxSessionAge" || name == "MaxSessionDurationCapsLifetime" {
				tol = time.Hour // jitter applies to the margin, not the whole lead
			}
			if lead < tc.wantLead-tol || lead > tc.wantLead+tol {
				t.Errorf("%s\nrenews %s before expiry, want %s ±%s", tc.reason, lead, tc.wantLead, tol)
			}
			if !at.After(s.IssuedAt) {
				t.Errorf("%s\nrenewal at or before issue: a renewal loop", tc.reason)
			}
		})
	}
}

func TestJitterSpreadsRenewals(t *testing.T) {
	s := Session{IssuedAt: t0, ExpiresAt: t0.Add(time.Hour)}
	seen := map[time.Time]bool{}
	lo, hi := t0.Add(time.Hour), t0
	for i := range 100 {
		at := RenewalTime(s, defaults(), "uid-"+string(rune('a'+i%26))+string(rune('a'+i/26)))
		seen[at] = true
		if at.Before(lo) {
			lo = at
		}
		if at.After(hi) {
			hi = at
		}
		if again := RenewalTime(s, defaults(), "uid-"+string(rune('a'+i%26))+string(rune('a'+i/26))); !again.Equal(at) {
			t.Fatalf("jitter is not deterministic per object")
		}
	}
	if len(seen) < 90 {
		t.Errorf("100 credentials renew at only %d distinct times", len(seen))
	}
	// 20 min margin ±10% = ±2 min.
	if hi.Sub(lo) < 3*time.Minute || hi.Sub(lo) > 4*time.Minute {
		t.Errorf("renewals spread over %s, want close to 4 minutes", hi.Sub(lo))
	}
}

// Credentials created together must drift apart: the offset of one Credential's successive
// tokens is drawn again for each token, so a wave of renewals does not come back each rotation.
func TestJitterRedrawnPerToken(t *testing.T) {
	offsets := map[time.Duration]bool{}
	issued := t0
	for range 20 {
		s := Session{IssuedAt: issued, ExpiresAt: issued.Add(2 * time.Minute)}
		at := RenewalTime(s, defaults(), "uid")
		offsets[at.Sub(issued)] = true
		issued = at
	}
	if len(offsets) < 15 {
		t.Errorf("20 successive tokens of one Credential renew at only %d distinct offsets after issue", len(offsets))
	}
}

// The first tokens of Credentials created together renew spread over the last three quarters of
// the planned wait (their later tokens by the usual jitter), the same time after a restart.
func TestFirstRenewalSpread(t *testing.T) {
	lo, hi := time.Duration(1<<62), time.Duration(0)
	for i := range 200 {
		key := "uid-" + strconv.Itoa(i)
		s := Session{IssuedAt: t0, ExpiresAt: t0.Add(time.Hour), First: true}
		at := RenewalTime(s, defaults(), key)
		if again := RenewalTime(s, defaults(), key); !again.Equal(at) {
			t.Fatal("the first renewal time is not deterministic")
		}
		plain := RenewalTime(Session{IssuedAt: t0, ExpiresAt: t0.Add(time.Hour)}, defaults(), key)
		wait := at.Sub(t0)
		if wait > plain.Sub(t0) || wait < plain.Sub(t0)/4 {
			t.Fatalf("first renewal after %s, want between a quarter of %s and all of it", wait, plain.Sub(t0))
		}
		lo, hi = min(lo, wait), max(hi, wait)
	}
	// Planned about 40 min after issue (±4 min): spread over about 10 to 44 minutes.
	if hi-lo < 28*time.Minute {
		t.Errorf("200 first renewals spread over %s, want about 30 minutes", hi-lo)
	}
}

func TestDecide(t *testing.T) {
	fresh := &Session{IssuedAt: t0, ExpiresAt: t0.Add(time.Hour), HasRefreshToken: true, Start: t0, InputsVersion: "v1"}
	noRefresh := &Session{IssuedAt: t0, ExpiresAt: t0.Add(time.Hour), Start: t0, InputsVersion: "v1"}
	rejected := &Session{IssuedAt: t0, ExpiresAt: t0.Add(time.Hour), HasRefreshToken: true, Start: t0, InputsVersion: "v1", Rejected: true}
	late := t0.Add(50 * time.Minute)
	soon := t0.Add(time.Minute)
	probe := &Probe{Interval: 30 * time.Second}
	cases := map[string]struct {
		reason string
		in     Input
		want   Action
		wantAt time.Time
		// fallback, probe and answers are the decision's flags; wake, when set, its Wake.
		fallback, probe, answers bool
		wake                     time.Time
	}{
		"NoToken":        {reason: "First reconcile logs in.", in: Input{Now: t0, InputsVersion: "v1"}, want: Login},
		"Fresh":          {reason: "A fresh token waits.", in: Input{Now: soon, Session: fresh, InputsVersion: "v1", CanRefresh: true}, want: Wait},
		"DueRefresh":     {reason: "Due with a refresh token: refresh, and log in if the issuer rejects it.", in: Input{Now: late, Session: fresh, InputsVersion: "v1", CanRefresh: true}, want: Refresh, fallback: true},
		"DueNoRefresh":   {reason: "Due without refresh support: log in.", in: Input{Now: late, Session: fresh, InputsVersion: "v1"}, want: Login},
		"InputsChanged":  {reason: "A changed Secret or spec logs in at once, even when fresh.", in: Input{Now: soon, Session: fresh, InputsVersion: "v2", CanRefresh: true}, want: Login},
		"RefreshExpired": {reason: "An expired refresh token means a login.", in: Input{Now: late, Session: &Session{IssuedAt: t0, ExpiresAt: t0.Add(time.Hour), HasRefreshToken: true, RefreshExpiresAt: t0.Add(40 * time.Minute), Start: t0, InputsVersion: "v1"}, InputsVersion: "v1", CanRefresh: true}, want: Login},
		"MaxSessionAge": {
			reason: "Past the maximum session age: fresh login even though refresh works.",
			in:     Input{Now: late, Session: fresh, InputsVersion: "v1", CanRefresh: true, Policy: policy.Effective{MaxSessionAge: 30 * time.Minute, BeforeExpiryPercent: 33}},
			want:   Login,
		},
		"TransientBackoff": {
			reason: "5 s after the first transient failure: wait.",
			in:     Input{Now: late.Add(time.Second), Session: fresh, InputsVersion: "v1", CanRefresh: true, Failing: true, Failure: &Failure{At: late, Attempts: 1, InputsVersion: "v1"}},
			want:   Wait,
		},
		"TransientBackoffOver": {
			reason: "After the backoff the refresh is tried again.",
			in:     Input{Now: late.Add(10 * time.Second), Session: fresh, InputsVersion: "v1", CanRefresh: true, Failing: true, Failure: &Failure{At: late, Attempts: 1, InputsVersion: "v1"}},
			want:   Refresh, fallback: true,
		},
		"RetryAfterHonoured": {
			reason: "Retry-After longer than the backoff wins.",
			in:     Input{Now: late.Add(30 * time.Second), Session: fresh, InputsVersion: "v1", CanRefresh: true, Failing: true, Failure: &Failure{At: late, Attempts: 1, RetryAfter: time.Minute, InputsVersion: "v1"}},
			want:   Wait, wantAt: late.Add(time.Minute),
		},
		"BadCredentialsWait": {
			reason: "Rejected credentials wait a minute or more: no hot loop.",
			in:     Input{Now: t0.Add(30 * time.Second), InputsVersion: "v1", Failing: true, Failure: &Failure{At: t0, Attempts: 1, Kind: Persistent, InputsVersion: "v1"}},
			want:   Wait,
		},
		"BadCredentialsFixed": {
			reason: "A changed input Secret retries at once.",
			in:     Input{Now: t0.Add(30 * time.Second), InputsVersion: "v2", Failing: true, Failure: &Failure{At: t0, Attempts: 1, Kind: Persistent, InputsVersion: "v1"}},
			want:   Login,
		},

		// Renewal requested (kubectl tokenkeeper renew): envtest checked these by sleeping.
		"RequestedFreshRefreshes": {
			reason: "A request renews a fresh token at once, with its refresh token, and is recorded as answered.",
			in:     Input{Now: t0.Add(10 * time.Second), Session: fresh, InputsVersion: "v1", CanRefresh: true, RenewRequested: true},
			want:   Refresh, wantAt: t0.Add(10 * time.Second), fallback: true, answers: true,
		},
		"RequestedNoRefreshLogsIn": {
			reason: "A request for a session without a refresh token logs in.",
			in:     Input{Now: t0.Add(10 * time.Second), Session: noRefresh, InputsVersion: "v1", CanRefresh: true, RenewRequested: true},
			want:   Login, answers: true,
		},
		"RequestedRejectedLogsIn": {
			reason: "A request for a session whose token the issuer rejected logs in rather than refreshing it, and is answered by that login.",
			in:     Input{Now: t0.Add(10 * time.Second), Session: rejected, InputsVersion: "v1", CanRefresh: true, RenewRequested: true},
			want:   Login, answers: true,
		},
		"RequestedWithinMinimumInterval": {
			reason: "A request 2 s after issue waits for the minimum interval, and stays pending (not answered yet).",
			in:     Input{Now: t0.Add(2 * time.Second), Session: fresh, InputsVersion: "v1", CanRefresh: true, RenewRequested: true},
			want:   Wait, wantAt: t0.Add(MinRenewalInterval),
		},
		"RequestedWhileBackingOff": {
			reason: "A request during a failure's backoff waits for the retry, which will answer it.",
			in:     Input{Now: late.Add(time.Second), Session: fresh, InputsVersion: "v1", CanRefresh: true, RenewRequested: true, Failing: true, Failure: &Failure{At: late, Attempts: 1, InputsVersion: "v1"}},
			want:   Wait,
		},
		"RequestedWhileFailingFresh": {
			reason: "A failure whose backoff is over but whose token is fresh (a probe rejection's record) leaves the request to the retry.",
			in:     Input{Now: soon, Session: fresh, InputsVersion: "v1", CanRefresh: true, RenewRequested: true, Failing: true},
			want:   Wait,
		},
		"RequestedAnsweredByDueRenewal": {
			reason: "A renewal that is due anyway answers a pending request.",
			in:     Input{Now: late, Session: fresh, InputsVersion: "v1", CanRefresh: true, RenewRequested: true},
			want:   Refresh, fallback: true, answers: true,
		},

		// A refreshToken login's input refresh token, once sent, is never sent again.
		"InputSpentFirstLogin": {
			reason: "No session and the input refresh token already sent: nothing may be sent.",
			in:     Input{Now: t0, InputsVersion: "v1", CanRefresh: true, InputSpent: true},
			want:   Stop,
		},
		"InputSpentInputsChanged": {
			reason: "Changed inputs would log in with the spent token: the session's own refresh token carries on, with no login fallback.",
			in:     Input{Now: soon, Session: fresh, InputsVersion: "v2", CanRefresh: true, InputSpent: true},
			want:   Refresh, fallback: false,
		},
		"InputSpentNoSessionRefreshToken": {
			reason: "Changed inputs, spent input and a session without a refresh token: stop.",
			in:     Input{Now: soon, Session: noRefresh, InputsVersion: "v2", CanRefresh: true, InputSpent: true},
			want:   Stop,
		},
		"InputSpentDueRefresh": {
			reason: "A due refresh of a refreshToken session may not fall back to a login.",
			in:     Input{Now: late, Session: fresh, InputsVersion: "v1", CanRefresh: true, InputSpent: true},
			want:   Refresh, fallback: false,
		},
		"InputSpentRequested": {
			reason: "A renewal request for a session without a refresh token would log in with the spent token: stop, and the request is answered.",
			in:     Input{Now: t0.Add(10 * time.Second), Session: noRefresh, InputsVersion: "v1", CanRefresh: true, RenewRequested: true, InputSpent: true},
			want:   Stop, answers: true,
		},

		// The issuer's probe.
		"ProbeDue": {
			reason: "A fresh token whose last probe is an interval old is probed before waiting.",
			in:     Input{Now: soon, Session: fresh, InputsVersion: "v1", CanRefresh: true, Probe: &Probe{Interval: 30 * time.Second, Last: soon.Add(-30 * time.Second)}},
			want:   Wait, probe: true, wake: soon,
		},
		"ProbeNeverRun": {
			reason: "A token never probed is probed.",
			in:     Input{Now: soon, Session: fresh, InputsVersion: "v1", CanRefresh: true, Probe: probe},
			want:   Wait, probe: true,
		},
		"ProbeNotDue": {
			reason: "A token probed 10 s ago waits, and wakes for the next probe 20 s on, before the renewal.",
			in:     Input{Now: soon, Session: fresh, InputsVersion: "v1", CanRefresh: true, Probe: &Probe{Interval: 30 * time.Second, Last: soon.Add(-10 * time.Second)}},
			want:   Wait, wake: soon.Add(20 * time.Second),
		},
		"NoProbeWhileFailing": {
			reason: "While a failure is retried the probe waits: the retry is what tells.",
			in:     Input{Now: soon, Session: fresh, InputsVersion: "v1", CanRefresh: true, Failing: true, Probe: probe},
			want:   Wait,
		},
		"ProbeRejected": {
			reason: "The probe has just rejected the token: log in now, whatever the backoff of the failure that records it.",
			in: Input{Now: soon, Session: rejected, InputsVersion: "v1", CanRefresh: true, Failing: true, ProbeRejected: true, Probe: probe,
				Failure: &Failure{At: soon, Attempts: 1, InputsVersion: "v1"}},
			want: Login, wantAt: soon,
		},
		"ProbeRejectedRefreshTokenSession": {
			reason: "The probe rejected a refreshToken session's token and its input is spent: refresh with the session's refresh token.",
			in:     Input{Now: soon, Session: rejected, InputsVersion: "v1", CanRefresh: true, ProbeRejected: true, InputSpent: true},
			want:   Refresh, fallback: false,
		},
		"RejectedEarlierWaitsBackoff": {
			reason: "A token rejected by the probe after a renewal (recorded as a failure) is replaced after the backoff, not in a loop.",
			in:     Input{Now: soon.Add(time.Second), Session: rejected, InputsVersion: "v1", CanRefresh: true, Failing: true, Failure: &Failure{At: soon, Attempts: 1, InputsVersion: "v1"}},
			want:   Wait,
		},
		"RejectedAfterBackoff": {
			reason: "After the backoff a rejected token is replaced by a login.",
			in:     Input{Now: soon.Add(time.Minute), Session: rejected, InputsVersion: "v1", CanRefresh: true, Failing: true, Failure: &Failure{At: soon, Attempts: 1, InputsVersion: "v1"}},
			want:   Login,
		},

		// When to look again.
		"WakeForRevocation": {
			reason: "A replaced session due to be revoked in 30 s wakes the Credential then.",
			in:     Input{Now: soon, Session: fresh, InputsVersion: "v1", CanRefresh: true, Revocations: []time.Time{soon.Add(30 * time.Second)}},
			want:   Wait, wake: soon.Add(30 * time.Second),
		},
		"WakeAtExpiryDuringBackoff": {
			reason: "A long backoff past the token's expiry still wakes just after the expiry, for status to say so.",
			in: Input{Now: t0.Add(59 * time.Minute), Session: fresh, InputsVersion: "v1", CanRefresh: true, Failing: true,
				Failure: &Failure{At: t0.Add(59 * time.Minute), Attempts: 1, Kind: Persistent, InputsVersion: "v1"}},
			want: Wait, wake: t0.Add(time.Hour + time.Second),
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if tc.in.Policy.BeforeExpiryPercent == 0 {
				tc.in.Policy = defaults()
			}
			tc.in.JitterKey = "uid"
			got := Decide(tc.in)
			if got.Action != tc.want {
				t.Fatalf("%s\naction %s (%s), want %s", tc.reason, got.Action, got.Reason, tc.want)
			}
			if !tc.wantAt.IsZero() && !got.At.Equal(tc.wantAt) {
				t.Errorf("%s\nat %s, want %s", tc.reason, got.At, tc.wantAt)
			}
			if got.Action == Wait && !got.At.After(tc.in.Now) {
				t.Errorf("%s\nwait until %s, not after now", tc.reason, got.At)
			}
			if got.Fallback != tc.fallback || got.Probe != tc.probe || got.AnswersRenewRequest != tc.answers {
				t.Errorf("%s\nfallback %v probe %v answers %v, want %v %v %v", tc.reason, got.Fallback, got.Probe, got.AnswersRenewRequest,
					tc.fallback, tc.probe, tc.answers)
			}
			if !tc.wake.IsZero() && !got.Wake.Equal(tc.wake) {
				t.Errorf("%s\nwake %s, want %s", tc.reason, got.Wake, tc.wake)
			}
			if got.Wake.After(got.At) {
				t.Errorf("%s\nwake %s after the action's time %s", tc.reason, got.Wake, got.At)
			}
		})
	}
}

func TestBackoffGrowsAndCaps(t *testing.T) {
	prev := time.Duration(0)
	for n := int32(1); n <= 12; n++ {
		d := Backoff(Failure{Attempts: n}, "k")
		if d > 5*time.Minute+time.Minute || d < 4*time.Second {
			t.Fatalf("attempt %d: backoff %s out of [4s, 6m]", n, d)
		}
		if n <= 6 && d <= prev {
			t.Fatalf("attempt %d: backoff %s did not grow from %s", n, d, prev)
		}
		prev = d
	}
	if d := Backoff(Failure{Attempts: 1, Kind: Persistent}, "k"); d < 48*time.Second {
		t.Fatalf("persistent failures back off at least about a minute, got %s", d)
	}
}
