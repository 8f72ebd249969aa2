package sim

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// maxPageSize is GCE's largest maxResults.
const maxPageSize = 500

// paginate filters items by the request's filter and returns the page that
// pageToken and maxResults select, with the token of the next page.
func paginate[T any](r *request, items []T, view func(T) any) ([]T, string, error) {
	f, err := parseFilter(r.URL.Query().Get("filter"))
	if err != nil {
		return nil, "", err
	}
	var kept []T
	for _, it := range items {
		if f.match(view(it)) {
			kept = append(kept, it)
		}
	}
	size := maxPageSize
	if v := r.URL.Query().Get("maxResults"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, "", errInvalid("Invalid value for field 'maxResults': '%s'. Must be a non-negative integer.", v)
		}
		if n > 0 && n < maxPageSize {
			size = n
		}
	}
	start := 0
	if tok := r.URL.Query().Get("pageToken"); tok != "" {
		b, err := base64.RawURLEncoding.DecodeString(tok)
		if err == nil {
			start, err = strconv.Atoi(string(b))
		}
		if err != nil || start < 0 || start > len(kept) {
			return nil, "", errInvalid("Invalid value for field 'pageToken': '%s'.", tok)
		}
	}
	end := min(start+size, len(kept))
	next := ""
	if end < len(kept) {
		next = base64.RawURLEncoding.EncodeToString([]byte(strconv.Itoa(end)))
	}
	return kept[start:end], next, nil
}

// filter is a parsed list filter: a conjunction of comparisons. It supports
// what kubeha and gcloud send: `labels.KEY = "VALUE"`, `name = "N"`,
// `name != "N"`, `name eq REGEX`, `name ne REGEX`, each optionally in
// parentheses, joined by AND or juxtaposition.
type filter []comparison

type comparison struct {
	field string
	op    string // "=", "!=", "eq", "ne"
	value string
	re    *regexp.Regexp
}

var termRe = regexp.MustCompile(`^\s*\(?\s*([A-Za-z0-9_.\-]+)\s*(=|!=|\beq\b|\bne\b)\s*("(?:[^"\\]|\\.)*"|'[^']*'|[^\s()]+)\s*\)?\s*(?:\bAND\b)?`)

func parseFilter(s string) (filter, error) {
	var f filter
	rest := strings.TrimSpace(s)
	for rest != "" {
		m := termRe.FindStringSubmatchIndex(rest)
		if m == nil || m[1] == 0 {
			return nil, errInvalid("Invalid value for field 'filter': '%s'. Invalid list filter expression.", s)
		}
		c := comparison{field: rest[m[2]:m[3]], op: rest[m[4]:m[5]], value: unquote(rest[m[6]:m[7]])}
		if c.op == "eq" || c.op == "ne" {
			re, err := regexp.Compile("^(?:" + c.value + ")$")
			if err != nil {
				return nil, errInvalid("Invalid value for field 'filter': '%s'. Invalid regular expression: %v", s, err)
			}
			c.re = re
		}
		f = append(f, c)
		rest = strings.TrimSpace(rest[m[1]:])
	}
	return f, nil
}

func unquote(v string) string {
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		if v[0] == '"' {
			if u, err := strconv.Unquote(v); err == nil {
				return u
			}
		}
		return v[1 : len(v)-1]
	}
	return v
}

func (f filter) match(v any) bool {
	if len(f) == 0 {
		return true
	}
	b, _ := json.Marshal(v)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	for _, c := range f {
		got, ok := lookup(m, c.field)
		var hit bool
		switch c.op {
		case "=":
			hit = ok && (got == c.value || path.Base(got) == c.value)
		case "!=":
			hit = !ok || (got != c.value && path.Base(got) != c.value)
		case "eq":
			hit = ok && (c.re.MatchString(got) || c.re.MatchString(path.Base(got)))
		case "ne":
			hit = !ok || !(c.re.MatchString(got) || c.re.MatchString(path.Base(got)))
		}
		if !hit {
			return false
		}
	}
	return true
}

// lookup reads a dotted field path of a JSON object as a string.
func lookup(m map[string]any, path string) (string, bool) {
	var cur any = m
	for _, part := range strings.Split(path, ".") {
		obj, ok := cur.(map[string]any)
		if !ok {
			return "", false
		}
		cur, ok = obj[part]
		if !ok {
			return "", false
		}
	}
	switch v := cur.(type) {
	case string:
		return v, true
	case nil:
		return "", false
	default:
		return fmt.Sprint(v), true
	}
}

// scopeOf is the aggregated-list scope of a relative path: "zones/Z" or
// "regions/R".
func scopeOf(rel string) string {
	parts := strings.Split(rel, "/")
	if len(parts) >= 4 {
		return parts[2] + "/" + parts[3]
	}
	return "global"
}
