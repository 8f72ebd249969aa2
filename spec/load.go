package spec

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
	"sigs.k8s.io/yaml"
)

// MaxFileSize is the largest cluster.yaml accepted. A real spec is under 2 KiB.
const MaxFileSize = 1 << 20

// Load reads, defaults and validates the cluster spec at path ("-" reads
// standard input). On success it returns the cluster and any warnings; on
// failure an *Error listing every problem, or an error about the file itself.
func Load(path string) (*Cluster, []Problem, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, nil, err
	}
	c, warnings, err := Parse(path, data)
	if err != nil {
		return nil, nil, err
	}
	if path != "-" {
		c.Source = path
	}
	return c, warnings, nil
}

func readFile(path string) ([]byte, error) {
	if path == "" {
		return nil, errors.New("no cluster spec given: pass -f cluster.yaml")
	}
	var r io.Reader
	if path == "-" {
		r = os.Stdin
	} else {
		fi, err := os.Stat(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("%s: no such file: pass the path of your cluster.yaml with -f", path)
		case err != nil:
			return nil, fmt.Errorf("read cluster spec %s: %w", path, err)
		case fi.IsDir():
			return nil, fmt.Errorf("%s is a directory: pass the path of a cluster.yaml file in it with -f", path)
		case !fi.Mode().IsRegular():
			return nil, fmt.Errorf("%s is not a regular file: pass the path of a cluster.yaml file", path)
		case fi.Size() > MaxFileSize:
			return nil, fmt.Errorf("%s is %d bytes: a cluster spec is at most %d bytes; check that -f names the right file", path, fi.Size(), MaxFileSize)
		}
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("read cluster spec %s: %w", path, err)
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read cluster spec %s: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%s is larger than %d bytes: a cluster spec is at most %d bytes; check that -f names the right file", path, MaxFileSize, MaxFileSize)
	}
	return data, nil
}

// Parse decodes, defaults and validates a cluster spec read from name. It
// reports every problem it can find at once, each with its field and line.
func Parse(name string, data []byte) (*Cluster, []Problem, error) {
	fail := func(ps ...Problem) (*Cluster, []Problem, error) {
		return nil, nil, &Error{File: name, Problems: ps}
	}
	if len(bytes.TrimSpace(stripComments(data))) == 0 {
		return fail(Problem{Message: "the file is empty: write a Cluster spec (see examples/quickstart.yaml)"})
	}
	if !isUTF8(data) {
		return fail(Problem{Message: "the file is not UTF-8 text: save it as UTF-8"})
	}
	if ps := tabProblems(data); len(ps) > 0 {
		return fail(ps...)
	}
	root, p := parseNode(data)
	if p != nil {
		return fail(*p)
	}
	if root.Kind != yamlv3.MappingNode {
		return fail(Problem{Line: root.Line, Message: fmt.Sprintf("the document is a %s: a cluster spec is a mapping starting with apiVersion: %s", kindName(root), APIVersion)})
	}
	if ps := headerProblems(root); len(ps) > 0 {
		return fail(ps...)
	}
	if ps := shapeProblems(root, reflect.TypeOf(Cluster{}), ""); len(ps) > 0 {
		return fail(ps...)
	}
	var c Cluster
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		// The shape walk catches what it can with lines; this is the backstop.
		return fail(decodeProblem(root, err))
	}
	SetDefaults(&c)
	warnings, problems := Validate(&c)
	if len(problems) > 0 {
		for i := range problems {
			problems[i].Line = lineOf(root, problems[i].Field)
		}
		return fail(problems...)
	}
	for i := range warnings {
		warnings[i].Line = lineOf(root, warnings[i].Field)
	}
	return &c, warnings, nil
}

func stripComments(data []byte) []byte {
	var out []byte
	for _, line := range bytes.Split(data, []byte("\n")) {
		t := bytes.TrimSpace(line)
		if len(t) > 0 && t[0] != '#' && !bytes.Equal(t, []byte("---")) {
			out = append(out, t...)
		}
	}
	return out
}

func isUTF8(b []byte) bool { return strings.ToValidUTF8(string(b), "\uFFFD") == string(b) }

func tabProblems(data []byte) []Problem {
	var out []Problem
	for i, line := range strings.Split(string(data), "\n") {
		indent := line[:len(line)-len(strings.TrimLeft(line, " \t"))]
		if strings.Contains(indent, "\t") && strings.TrimSpace(line) != "" {
			out = append(out, Problem{Line: i + 1, Message: "indentation uses a tab: YAML allows only spaces; replace the tab with spaces"})
			if len(out) == 5 {
				break
			}
		}
	}
	return out
}

var yamlLineRe = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseNode parses exactly one YAML document into a node tree.
func parseNode(data []byte) (*yamlv3.Node, *Problem) {
	dec := yamlv3.NewDecoder(bytes.NewReader(data))
	var doc yamlv3.Node
	if err := dec.Decode(&doc); err != nil {
		return nil, yamlProblem(err)
	}
	var extra yamlv3.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, &Problem{Line: extra.Line, Message: "a second YAML document starts here: put one Cluster in each file"}
	} else if !errors.Is(err, io.EOF) {
		return nil, yamlProblem(err)
	}
	if doc.Kind != yamlv3.DocumentNode || len(doc.Content) == 0 {
		return nil, &Problem{Message: "the file holds no YAML document: write a Cluster spec (see examples/quickstart.yaml)"}
	}
	return doc.Content[0], nil
}

func yamlProblem(err error) *Problem {
	msg := err.Error()
	if m := yamlLineRe.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Problem{Line: line, Message: "malformed YAML: " + m[2]}
	}
	return &Problem{Message: "malformed YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

func headerProblems(root *yamlv3.Node) []Problem {
	var out []Problem
	for _, h := range []struct{ key, want string }{{"apiVersion", APIVersion}, {"kind", Kind}} {
		v := child(root, h.key)
		switch {
		case v == nil:
			out = append(out, Problem{Field: h.key, Message: fmt.Sprintf("is missing: is this a kubeha cluster spec? Write %s: %s at the top", h.key, h.want)})
		case v.Kind != yamlv3.ScalarNode || v.Value != h.want:
			out = append(out, Problem{Field: h.key, Line: v.Line, Message: fmt.Sprintf("%q is not supported: use %s", v.Value, h.want)})
		}
	}
	return out
}

// shapeProblems walks the YAML tree against the Go type and reports unknown
// and duplicate fields and values of the wrong kind, with lines.
func shapeProblems(n *yamlv3.Node, t reflect.Type, path string) []Problem {
	for n.Kind == yamlv3.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yamlv3.ScalarNode && n.Tag == "!!null" {
		return nil // an empty value leaves the default
	}
	at := path
	if at == "" {
		at = "the document"
	}
	switch {
	case t == reflect.TypeOf(Duration{}):
		if n.Kind != yamlv3.ScalarNode || n.Tag != "!!str" {
			return []Problem{{Field: path, Line: n.Line, Message: fmt.Sprintf("want a duration such as \"5m\", got %s", describe(n))}}
		}
		var d Duration
		if err := d.UnmarshalJSON([]byte(strconv.Quote(n.Value))); err != nil {
			return []Problem{{Field: path, Line: n.Line, Message: err.Error()}}
		}
		return nil
	case t.Kind() == reflect.Struct:
		if n.Kind != yamlv3.MappingNode {
			return []Problem{{Field: path, Line: n.Line, Message: fmt.Sprintf("want a mapping with fields %s, got %s", strings.Join(fieldNames(t), ", "), describe(n))}}
		}
		var out []Problem
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value == "<<" {
				continue
			}
			fp := joinPath(path, k.Value)
			if first, dup := seen[k.Value]; dup {
				out = append(out, Problem{Field: fp, Line: k.Line, Message: fmt.Sprintf("is set twice (first on line %d): keep one", first)})
				continue
			}
			seen[k.Value] = k.Line
			f, ok := fieldByJSONName(t, k.Value)
			if !ok {
				msg := fmt.Sprintf("unknown field %q in %s", k.Value, at)
				if s := suggest(k.Value, fieldNames(t)); s != "" {
					msg += fmt.Sprintf(": did you mean %q?", s)
				} else {
					msg += fmt.Sprintf(": the fields are %s", strings.Join(fieldNames(t), ", "))
				}
				out = append(out, Problem{Field: fp, Line: k.Line, Message: msg})
				continue
			}
			out = append(out, shapeProblems(v, f.Type, fp)...)
		}
		return out
	case t.Kind() == reflect.Slice:
		if n.Kind != yamlv3.SequenceNode {
			return []Problem{{Field: path, Line: n.Line, Message: fmt.Sprintf("want a list such as [a, b], got %s", describe(n))}}
		}
		var out []Problem
		for i, e := range n.Content {
			out = append(out, shapeProblems(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i))...)
		}
		return out
	case t.Kind() == reflect.String:
		if n.Kind != yamlv3.ScalarNode {
			return []Problem{{Field: path, Line: n.Line, Message: fmt.Sprintf("want a string, got %s", describe(n))}}
		}
	case t.Kind() == reflect.Int:
		if n.Kind != yamlv3.ScalarNode || n.Tag != "!!int" {
			return []Problem{{Field: path, Line: n.Line, Message: fmt.Sprintf("want a whole number, got %s", describe(n))}}
		}
		if _, err := strconv.ParseInt(n.Value, 0, 32); err != nil {
			return []Problem{{Field: path, Line: n.Line, Message: fmt.Sprintf("%s is out of range", n.Value)}}
		}
	case t.Kind() == reflect.Bool:
		if n.Kind != yamlv3.ScalarNode || n.Tag != "!!bool" {
			return []Problem{{Field: path, Line: n.Line, Message: fmt.Sprintf("want true or false, got %s", describe(n))}}
		}
	}
	return nil
}

func describe(n *yamlv3.Node) string {
	if n.Kind != yamlv3.ScalarNode {
		return "a " + kindName(n)
	}
	switch n.Tag {
	case "!!str":
		return fmt.Sprintf("the string %q", n.Value)
	case "!!int", "!!float":
		return "the number " + n.Value
	case "!!bool":
		return "the boolean " + n.Value
	}
	return n.Value
}

func kindName(n *yamlv3.Node) string {
	switch n.Kind {
	case yamlv3.MappingNode:
		return "mapping"
	case yamlv3.SequenceNode:
		return "list"
	case yamlv3.ScalarNode:
		return "single value"
	}
	return "YAML node"
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func fieldByJSONName(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if n := jsonName(f); n == name && n != "-" && f.IsExported() {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func fieldNames(t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		if n := jsonName(t.Field(i)); n != "-" && t.Field(i).IsExported() {
			out = append(out, n)
		}
	}
	return out
}

// suggest returns the known name closest to a misspelt one, if any is close.
func suggest(got string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		if d := editDistance(strings.ToLower(got), strings.ToLower(k)); d < bestDist {
			best, bestDist = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

func child(m *yamlv3.Node, key string) *yamlv3.Node {
	if m == nil || m.Kind != yamlv3.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// lineOf finds the line of a field path in the YAML tree: the line of the
// value if present, else of the nearest present parent; 0 if none.
func lineOf(root *yamlv3.Node, path string) int {
	n, line := root, 0
	for _, seg := range splitPath(path) {
		for n != nil && n.Kind == yamlv3.AliasNode {
			n = n.Alias
		}
		if seg.index >= 0 {
			if n == nil || n.Kind != yamlv3.SequenceNode || seg.index >= len(n.Content) {
				return line
			}
			n = n.Content[seg.index]
		} else {
			var key *yamlv3.Node
			if n != nil && n.Kind == yamlv3.MappingNode {
				for i := 0; i+1 < len(n.Content); i += 2 {
					if n.Content[i].Value == seg.name {
						key, n = n.Content[i], n.Content[i+1]
						break
					}
				}
			}
			if key == nil {
				return line
			}
		}
		line = n.Line
	}
	return line
}

func decodeProblem(root *yamlv3.Node, err error) Problem {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return Problem{Field: te.Field, Line: lineOf(root, te.Field), Message: fmt.Sprintf("want %s, got a %s", te.Type, te.Value)}
	}
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "error unmarshaling JSON: while decoding JSON: ")
	msg = strings.TrimPrefix(msg, "error converting YAML to JSON: ")
	return Problem{Message: msg}
}

// Hash is a stable digest of the defaulted spec: a saved plan records it so
// that applying the plan after the spec changed is refused.
func (c *Cluster) Hash() string {
	b, err := json.Marshal(c)
	if err != nil {
		panic(fmt.Sprintf("marshal cluster spec: %v", err)) // plain data: cannot fail
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Dir is the directory that relative paths in the spec (pki.dir) are
// resolved against: the directory of the file it was loaded from, or the
// working directory for a spec read from standard input.
func (c *Cluster) Dir() string {
	if c.Source == "" {
		return "."
	}
	return filepath.Dir(c.Source)
}

// BackupDir is where the cluster's etcd snapshots go: backups/ beside its
// PKI directory.
func (c *Cluster) BackupDir() string { return filepath.Join(c.PKIDir(), "..", "backups") }

// PKIDir is the resolved directory of the cluster's PKI.
func (c *Cluster) PKIDir() string {
	if filepath.IsAbs(c.Spec.PKI.Dir) {
		return c.Spec.PKI.Dir
	}
	return filepath.Join(c.Dir(), c.Spec.PKI.Dir)
}
