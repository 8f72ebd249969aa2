package spec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
)

//go:generate go test -run TestSchemaUpToDate -update .

// SchemaID is the $id of the published JSON Schema.
const SchemaID = "https://kubeha.io/schemas/v1alpha1/cluster.schema.json"

// JSONSchema returns the JSON Schema (draft-07) of cluster.yaml, generated
// from the Go types: json tags give the names, validate tags the
// constraints, doc tags the descriptions. The committed
// spec/cluster.schema.json is this output; a test keeps them equal.
func JSONSchema() []byte {
	s := schemaFor(reflect.TypeOf(Cluster{}), "")
	s["$schema"] = "http://json-schema.org/draft-07/schema#"
	s["$id"] = SchemaID
	s["title"] = "kubeha Cluster"
	s["description"] = "A highly available Kubernetes control plane on Google Compute Engine, managed by kubeha."
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		panic(fmt.Sprintf("encode schema: %v", err)) // maps of plain values: cannot fail
	}
	return buf.Bytes()
}

type schema = map[string]any

func schemaFor(t reflect.Type, validate string) schema {
	rules := strings.Split(validate, ",")
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	s := schema{}
	switch {
	case t == reflect.TypeOf(Duration{}):
		s["type"] = "string"
		s["pattern"] = `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`
	case t.Kind() == reflect.Struct:
		s["type"] = "object"
		s["additionalProperties"] = false
		props := schema{}
		var required []string
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name := jsonName(f)
			if name == "-" || !f.IsExported() {
				continue
			}
			p := schemaFor(f.Type, f.Tag.Get("validate"))
			if d := f.Tag.Get("doc"); d != "" {
				p["description"] = d
			}
			applySchemaTag(p, f.Tag.Get("jsonschema"))
			props[name] = p
			if hasRule(f.Tag.Get("validate"), "required") {
				required = append(required, name)
			}
		}
		s["properties"] = props
		if len(required) > 0 {
			s["required"] = required
		}
	case t.Kind() == reflect.Slice:
		s["type"] = "array"
		var elemRules string
		for i, r := range rules {
			if r == "dive" {
				elemRules = strings.Join(rules[i+1:], ",")
				rules = rules[:i]
				break
			}
		}
		s["items"] = schemaFor(t.Elem(), elemRules)
		for _, r := range rules {
			if v, ok := strings.CutPrefix(r, "min="); ok {
				s["minItems"] = atoi(v)
			}
			if v, ok := strings.CutPrefix(r, "max="); ok {
				s["maxItems"] = atoi(v)
			}
		}
		s["uniqueItems"] = true
	case t.Kind() == reflect.String:
		s["type"] = "string"
		for _, r := range rules {
			if c, ok := customRules[r]; ok {
				s["pattern"] = c.re.String()
			}
		}
	case t.Kind() == reflect.Int:
		s["type"] = "integer"
		for _, r := range rules {
			if v, ok := strings.CutPrefix(r, "min="); ok {
				s["minimum"] = atoi(v)
			}
			if v, ok := strings.CutPrefix(r, "max="); ok {
				s["maximum"] = atoi(v)
			}
		}
	case t.Kind() == reflect.Bool:
		s["type"] = "boolean"
	}
	return s
}

// applySchemaTag applies a jsonschema:"enum=1 3 5 7" or jsonschema:"const=X" tag.
func applySchemaTag(s schema, tag string) {
	if v, ok := strings.CutPrefix(tag, "pattern="); ok {
		s["pattern"] = v
	}
	if v, ok := strings.CutPrefix(tag, "const="); ok {
		s["const"] = v
	}
	if v, ok := strings.CutPrefix(tag, "enum="); ok {
		var enum []any
		for _, e := range strings.Fields(v) {
			if n, err := strconv.Atoi(e); err == nil {
				enum = append(enum, n)
			} else {
				enum = append(enum, e)
			}
		}
		s["enum"] = enum
	}
}

func hasRule(validate, rule string) bool {
	for _, r := range strings.Split(validate, ",") {
		if r == "dive" {
			return false
		}
		if r == rule {
			return true
		}
	}
	return false
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		panic(fmt.Sprintf("bad number %q in a validate tag", s)) // programming error, caught by the schema test
	}
	return n
}
