package validation

import (
	"net/http"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

// TestKeySetHonoursCacheControl: a key removed from a key set that says how long it may be kept
// (Cache-Control max-age shorter than the periodic refresh, or no-store) stops verifying tokens
// once that lifetime has passed — even a token already cached as verified — but never sooner
// than minRefreshInterval after the last fetch, so a hostile key set cannot make us fetch it in
// a loop. The clock is a fake one: nothing here waits.
func TestKeySetHonoursCacheControl(t *testing.T) {
	cases := map[string]struct {
		reason  string
		header  http.Header
		after   time.Duration
		refused bool
		// fetches is how many times the key set was fetched in all, the first included.
		fetches int32
	}{
		"ShortMaxAgePassed": {
			reason:  "max-age=2 is below the floor: the key is refused minRefreshInterval after the fetch, one fetch later.",
			header:  http.Header{"Cache-Control": {"max-age=2"}},
			after:   minRefreshInterval,
			refused: true,
			fetches: 2,
		},
		"ShortMaxAgeWithinFloor": {
			reason:  "Within the floor, a max-age=2 key set is not fetched again: the removed key still verifies.",
			header:  http.Header{"Cache-Control": {"max-age=2"}},
			after:   minRefreshInterval - time.Second,
			fetches: 1,
		},
		"MaxAgePassed": {
			reason:  "max-age=60 (with other directives) is honoured: 60 s after the fetch the removed key is refused.",
			header:  http.Header{"Cache-Control": {"public, max-age=60, must-revalidate"}},
			after:   time.Minute,
			refused: true,
			fetches: 2,
		},
		"MaxAgeNotYet": {
			reason:  "Before max-age=60 has passed, the keys at hand are used without a fetch.",
			header:  http.Header{"Cache-Control": {"max-age=60"}},
			after:   time.Minute - time.Second,
			fetches: 1,
		},
		"AgeCounts": {
			reason:  "A response that already spent 30 s of its 60 in a cache (Age: 30) expires 30 s after the fetch.",
			header:  http.Header{"Cache-Control": {"max-age=60"}, "Age": {"30"}},
			after:   30 * time.Second,
			refused: true,
			fetches: 2,
		},
		"NoStore": {
			reason:  "no-store: fetched again at the minimum interval, and the removed key is refused then.",
			header:  http.Header{"Cache-Control": {"no-store"}},
			after:   minRefreshInterval,
			refused: true,
			fetches: 2,
		},
		"NoCacheWithinFloor": {
			reason:  "no-cache (or max-age=0) cannot make us fetch more often than once per minRefreshInterval.",
			header:  http.Header{"Cache-Control": {"no-cache", "max-age=0"}},
			after:   minRefreshInterval - time.Second,
			fetches: 1,
		},
		"LongMaxAge": {
			reason:  "A max-age longer than the periodic refresh changes nothing: the reconciler's refresh governs.",
			header:  http.Header{"Cache-Control": {"max-age=86400"}},
			after:   maxHonouredAge - time.Second,
			fetches: 1,
		},
		"NoCacheControl": {
			reason:  "Without Cache-Control the keys live until the periodic refresh, as before.",
			after:   maxHonouredAge - time.Second,
			fetches: 1,
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			k := newKeyServer(t)
			k.header = tc.header
			clk := clocktesting.NewFakeClock(time.Now())
			v := newTestValidator(t, k, clk, nil)
			bearer := []string{"Bearer " + k.sign(t, "RS256", "rsa1", claims(clk.Now(), nil), nil)}
			for range 2 { // the second use puts the token in the verified cache
				if _, d := v.Authenticate(t.Context(), bearer); d != nil {
					t.Fatalf("%s\nbefore the key is removed: %v", tc.reason, d)
				}
			}
			k.rotate(t) // rsa1 leaves the key set
			clk.Step(tc.after)
			for i := range 3 {
				_, d := v.Authenticate(t.Context(), bearer)
				if got := d != nil; got != tc.refused {
					t.Fatalf("%s\nuse %d, %v after the fetch: denial %v, want refused=%t", tc.reason, i+1, tc.after, d, tc.refused)
				}
			}
			if got := k.hits.Load(); got != tc.fetches {
				t.Errorf("%s\nthe key set was fetched %d times, want %d", tc.reason, got, tc.fetches)
			}
		})
	}
}

// TestCacheLifetime: how long a key set response may be used, read from its headers.
func TestCacheLifetime(t *testing.T) {
	cases := map[string]struct {
		reason string
		header http.Header
		want   time.Duration
	}{
		"None":          {"No Cache-Control: the periodic refresh.", nil, maxHonouredAge},
		"MaxAge":        {"max-age in seconds.", http.Header{"Cache-Control": {"max-age=2"}}, 2 * time.Second},
		"CaseAndQuotes": {"Directive names are case-insensitive; a quoted value is tolerated.", http.Header{"Cache-Control": {`Public, MAX-AGE="7"`}}, 7 * time.Second},
		"NoStore":       {"no-store wins over any max-age.", http.Header{"Cache-Control": {"max-age=60, no-store"}}, 0},
		"NoCache":       {"no-cache: use once, fetch again.", http.Header{"Cache-Control": {"no-cache"}}, 0},
		"Smallest":      {"Several max-age (across lines): the smallest.", http.Header{"Cache-Control": {"max-age=60", "max-age=20"}}, 20 * time.Second},
		"Garbage":       {"An unreadable or negative max-age is ignored.", http.Header{"Cache-Control": {"max-age=abc, max-age=-5"}}, maxHonouredAge},
		"Huge":          {"A max-age beyond int64 seconds is ignored, not overflowed.", http.Header{"Cache-Control": {"max-age=99999999999999999999"}}, maxHonouredAge},
		"Long":          {"A max-age longer than the periodic refresh is capped to it.", http.Header{"Cache-Control": {"max-age=86400"}}, maxHonouredAge},
		"Age":           {"Age is subtracted.", http.Header{"Cache-Control": {"max-age=60"}, "Age": {"45"}}, 15 * time.Second},
		"AgeBeyond":     {"An Age past max-age leaves nothing.", http.Header{"Cache-Control": {"max-age=60"}, "Age": {"600"}}, 0},
		"AgeAlone":      {"Age without max-age says nothing about a lifetime.", http.Header{"Age": {"45"}}, maxHonouredAge},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := cacheLifetime(tc.header); got != tc.want {
				t.Errorf("%s\ncacheLifetime(%v) = %v, want %v", tc.reason, tc.header, got, tc.want)
			}
		})
	}
}

// FuzzCacheLifetime: whatever a key set's headers say, the lifetime is between 0 and the
// periodic refresh.
func FuzzCacheLifetime(f *testing.F) {
	for _, s := range []string{"max-age=2", "no-store", "max-age=-1, max-age=5", `max-age="7"`, "max-age=99999999999999999999"} {
		f.Add(s, "3")
	}
	f.Fuzz(func(t *testing.T, cacheControl, age string) {
		if got := cacheLifetime(http.Header{"Cache-Control": {cacheControl}, "Age": {age}}); got < 0 || got > maxHonouredAge {
			t.Fatalf("cacheLifetime(%q, Age %q) = %v", cacheControl, age, got)
		}
	})
}
