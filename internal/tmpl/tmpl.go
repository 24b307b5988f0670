// Package tmpl parses and renders the Go text/templates that tenants write (issuer request
// bodies, Secret templates) within fixed bounds, so that no template can take the manager's
// memory or CPU from everyone else:
//
//   - no loops and no nested templates: `range`, `define`, `template` and `block` are refused
//     when the template is parsed, so rendering takes one pass over at most a few thousand nodes;
//   - output is capped at MaxOutput bytes, and so is every value a function builds (print,
//     printf, println, html, js, urlquery, toJson): a template cannot grow a string by doubling
//     it in variables;
//   - a missing key is an error, not "<no value>".
package tmpl

import (
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/url"
	"regexp"
	"strings"
	texttemplate "text/template"
	"text/template/parse"
)

// MaxOutput bounds what one template renders, and every value built while rendering it.
const MaxOutput = 64 << 10

// ErrTooLarge is returned when a template would render, or build a value, over MaxOutput.
var ErrTooLarge = fmt.Errorf("renders more than %d KiB", MaxOutput>>10)

// Template is a parsed, bounded template.
type Template struct{ t *texttemplate.Template }

// Parse parses text, refusing what could run without bound.
func Parse(name, text string) (*Template, error) {
	t, err := texttemplate.New(name).Option("missingkey=error").Funcs(funcs).Parse(text)
	if err != nil {
		return nil, err
	}
	if len(t.Templates()) > 1 {
		return nil, errors.New("define is not allowed: a template is one body")
	}
	if err := check(t.Root); err != nil {
		return nil, err
	}
	return &Template{t: t}, nil
}

// Execute renders the template with data.
func (t *Template) Execute(data any) (string, error) {
	var w limitWriter
	if err := t.t.Execute(&w, data); err != nil {
		if errors.Is(err, ErrTooLarge) {
			return "", ErrTooLarge
		}
		return "", err
	}
	return w.b.String(), nil
}

// check refuses loops and calls of other templates anywhere in the tree.
func check(n parse.Node) error {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return nil
		}
		for _, c := range n.Nodes {
			if err := check(c); err != nil {
				return err
			}
		}
	case *parse.IfNode:
		return errors.Join(check(n.List), check(n.ElseList))
	case *parse.WithNode:
		return errors.Join(check(n.List), check(n.ElseList))
	case *parse.RangeNode:
		return errors.New("range is not allowed: templates render one value, without loops")
	case *parse.TemplateNode:
		return errors.New("template and block are not allowed: a template is one body")
	}
	return nil
}

type limitWriter struct{ b strings.Builder }

func (w *limitWriter) Write(p []byte) (int, error) {
	if w.b.Len()+len(p) > MaxOutput {
		return 0, ErrTooLarge
	}
	return w.b.Write(p)
}

var _ io.Writer = (*limitWriter)(nil)

// bigWidth matches a printf width or precision of four digits or more.
var bigWidth = regexp.MustCompile(`%[-+# 0]*[0-9]{4,}|\.[0-9]{4,}`)

// funcs replaces every text/template builtin that builds a string with a bounded one, and adds
// toJson, which quotes a value for a JSON body.
var funcs = texttemplate.FuncMap{
	"print": func(args ...any) (string, error) { return bounded(args, func() string { return fmt.Sprint(args...) }) },
	"println": func(args ...any) (string, error) {
		return bounded(args, func() string { return fmt.Sprintln(args...) })
	},
	"printf": func(format string, args ...any) (string, error) {
		if bigWidth.MatchString(format) {
			return "", errors.New("printf widths and precisions are limited to 3 digits")
		}
		return bounded(append([]any{format}, args...), func() string { return fmt.Sprintf(format, args...) })
	},
	"html":     func(args ...any) (string, error) { return escaped(args, 6, template.HTMLEscaper) },
	"js":       func(args ...any) (string, error) { return escaped(args, 6, template.JSEscaper) },
	"urlquery": func(args ...any) (string, error) { return escaped(args, 3, urlQuery) },
	"toJson": func(v any) (string, error) {
		if size(v) > MaxOutput/6 {
			return "", ErrTooLarge
		}
		b, err := json.Marshal(v)
		return string(b), err
	},
}

func urlQuery(args ...any) string { return url.QueryEscape(fmt.Sprint(args...)) }

// bounded builds a string only when its arguments cannot make it larger than MaxOutput.
func bounded(args []any, build func() string) (string, error) {
	if size(args...) > MaxOutput {
		return "", ErrTooLarge
	}
	out := build()
	if len(out) > MaxOutput {
		return "", ErrTooLarge
	}
	return out, nil
}

// escaped runs an escaper whose output is at most growth times its input.
func escaped(args []any, growth int, esc func(...any) string) (string, error) {
	if size(args...)*growth > MaxOutput {
		return "", ErrTooLarge
	}
	return esc(args...), nil
}

// size is an upper bound of the printed size of simple values (strings and numbers), and counts
// anything else by its printed form, which is only ever built for small values.
func size(args ...any) int {
	n := 0
	for _, a := range args {
		switch v := a.(type) {
		case string:
			n += len(v)
		case []byte:
			n += len(v)
		case nil, bool, int, int64, float64:
			n += 24
		default:
			n += len(fmt.Sprint(v))
		}
	}
	return n
}
