package tmpl_test

import (
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/tokenkeeper/tokenkeeper/internal/tmpl"
)

var data = map[string]any{"token": strings.Repeat("t", 1000), "password": "hunter2", "big": strings.Repeat("b", 200<<10)}

func TestBounds(t *testing.T) {
	cases := map[string]struct {
		reason   string
		text     string
		parseErr string
		execErr  error
		want     string
	}{
		"Body": {
			reason: "An ordinary body template renders.",
			text:   `{"p":{{ .password | toJson }},"n":{{ printf "%d" 42 }}}`,
			want:   `{"p":"hunter2","n":42}`,
		},
		"RangeOverNumber": {
			reason:   "The reported attack: 6,000,000 copies of the token. Loops are refused when parsed.",
			text:     `{{ range 6000000 }}{{ $.token }}{{ end }}`,
			parseErr: "range is not allowed",
		},
		"RangeOverLength": {
			reason:   "Nested loops over len would be quadratic with no output at all.",
			text:     `{{ range len .token }}{{ range len $.token }}{{ end }}{{ end }}`,
			parseErr: "range is not allowed",
		},
		"Define": {
			reason:   "A defined template could call itself.",
			text:     `{{ define "a" }}{{ template "a" }}{{ end }}{{ template "a" }}`,
			parseErr: "define is not allowed",
		},
		"Block": {
			reason:   "block is define plus template.",
			text:     `{{ block "b" . }}x{{ end }}`,
			parseErr: "not allowed",
		},
		"LongOutput": {
			reason:  "Plain output over the cap stops rendering at the cap.",
			text:    strings.Repeat(`{{ .token }}`, 100),
			execErr: tmpl.ErrTooLarge,
		},
		"DoublingInVariables": {
			reason: "Doubling a string in variables builds memory without writing: every print is capped.",
			text: `{{ $a := print .token .token }}{{ $a = print $a $a }}{{ $a = print $a $a }}{{ $a = print $a $a }}` +
				`{{ $a = print $a $a }}{{ $a = print $a $a }}{{ $a = print $a $a }}{{ $a = print $a $a }}{{ $a = print $a $a }}`,
			execErr: tmpl.ErrTooLarge,
		},
		"PrintfWidth": {
			reason:  "A printf width pads without bound in the arguments' size.",
			text:    `{{ printf "%0999999d" 1 }}`,
			execErr: errors.New("printf widths"),
		},
		"EscaperGrowth": {
			reason:  "js escaping a large input grows it sixfold.",
			text:    `{{ $a := js .big }}`,
			execErr: tmpl.ErrTooLarge,
		},
		"MissingKey": {
			reason:  "A missing key is an error, not <no value> sent to the issuer.",
			text:    `{{ .nope }}`,
			execErr: errors.New("nope"),
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			p, err := tmpl.Parse(name, tc.text)
			if tc.parseErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.parseErr) {
					t.Fatalf("%s\nParse: %v, want an error containing %q", tc.reason, err, tc.parseErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("%s\nParse: %v", tc.reason, err)
			}
			out, err := p.Execute(data)
			switch {
			case tc.execErr == nil && err != nil:
				t.Fatalf("%s\nExecute: %v", tc.reason, err)
			case tc.execErr != nil && (err == nil || !errors.Is(err, tc.execErr) && !strings.Contains(err.Error(), tc.execErr.Error())):
				t.Fatalf("%s\nExecute: %v, want %v", tc.reason, err, tc.execErr)
			case out != tc.want:
				t.Fatalf("%s\nExecute = %q, want %q", tc.reason, out, tc.want)
			}
		})
	}
}

// FuzzRender renders any template of a CRD's size (4 KiB) against inputs of a Secret's size and
// checks the bounds: the output never exceeds MaxOutput, and one render never allocates more
// than a few megabytes (time is bounded by construction: no loops, no nested templates).
func FuzzRender(f *testing.F) {
	for _, seed := range []string{
		`{"u":{{ .username | toJson }}}`, `{{ range 10 }}x{{ end }}`, `{{ $a := print .big .big }}{{ $a = print $a $a }}`,
		`{{ printf "%s%s%s" .big .big .big }}`, `{{ js .big }}{{ html .big }}{{ urlquery .big }}`, `{{ with .username }}{{ . }}{{ end }}`,
		`{{ if eq .username "x" }}{{ slice .big 0 10 }}{{ else }}{{ index . "username" }}{{ end }}`,
	} {
		f.Add(seed)
	}
	inputs := map[string]any{"username": "svc", "big": strings.Repeat("x", 900<<10)}
	f.Fuzz(func(t *testing.T, text string) {
		if len(text) > 4096 {
			return
		}
		p, err := tmpl.Parse("fuzz", text)
		if err != nil {
			return
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		out, _ := p.Execute(inputs)
		runtime.ReadMemStats(&after)
		if len(out) > tmpl.MaxOutput {
			t.Fatalf("rendered %d bytes", len(out))
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 256<<20 {
			t.Fatalf("one render allocated %d MiB", alloc>>20)
		}
	})
}
