package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/yaml"
)

// none is what a table shows for an unset value.
const none = "-"

// relative is t against now: "in 42m", "3m10s ago", or "-".
func relative(now time.Time, t *time.Time) string {
	if t == nil || t.IsZero() {
		return none
	}
	d := t.Sub(now)
	if d >= 0 {
		return "in " + duration.HumanDuration(d)
	}
	return duration.HumanDuration(-d) + " ago"
}

// stamp is t in UTC with its relative time: "2026-11-23T07:00:00Z (in 42m)".
func stamp(now time.Time, t *time.Time) string {
	if t == nil || t.IsZero() {
		return none
	}
	return t.UTC().Format(time.RFC3339) + " (" + relative(now, t) + ")"
}

func timeOf(t *metav1.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := t.Time
	return &v
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// table writes aligned columns; cells never hold tabs or newlines.
func table(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	clean := func(cells []string) string {
		out := make([]string, len(cells))
		for i, c := range cells {
			out[i] = strings.Map(func(r rune) rune {
				if r == '\t' || r == '\n' || r == '\r' {
					return ' '
				}
				return r
			}, c)
		}
		return strings.Join(out, "\t") + "\n"
	}
	for _, r := range append([][]string{header}, rows...) {
		if _, err := io.WriteString(tw, clean(r)); err != nil {
			return err
		}
	}
	return tw.Flush()
}

// pairs writes "Label:  value" lines, aligned.
func pairs(w io.Writer, kv [][2]string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, p := range kv {
		if _, err := io.WriteString(tw, p[0]+":\t"+strings.ReplaceAll(p[1], "\n", " ")+"\n"); err != nil {
			return err
		}
	}
	return tw.Flush()
}

// say writes one line.
func say(w io.Writer, format string, args ...any) error {
	_, err := fmt.Fprintf(w, format+"\n", args...)
	return err
}

// printAs writes v as json or yaml; ok is false for other formats (the caller's table).
func printAs(w io.Writer, format string, v any) (ok bool, err error) {
	switch format {
	case "json":
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return true, err
		}
		_, err = fmt.Fprintln(w, string(b))
		return true, err
	case "yaml":
		b, err := yaml.Marshal(v)
		if err != nil {
			return true, err
		}
		_, err = w.Write(b)
		return true, err
	case "":
		return false, nil
	}
	return true, fmt.Errorf("unknown output format %q: use json or yaml", format)
}

// paint colors s for a terminal: green for True, red for False, yellow otherwise.
func (o *Options) paint(s string) string {
	if !o.Color {
		return s
	}
	code := "33"
	switch s {
	case "True":
		code = "32"
	case "False":
		code = "31"
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

// compact is v as one line of JSON, keys sorted.
func compact(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return "?"
	}
	return string(b)
}

// selector parses -l; empty selects everything.
func selector(s string) (labels.Selector, error) {
	if s == "" {
		return labels.Everything(), nil
	}
	sel, err := labels.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("-l %q: %w", s, err)
	}
	return sel, nil
}
