package spec

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"sigs.k8s.io/yaml"
)

// FuzzLoad checks that no input makes Parse panic, that every failure is a
// *spec.Error or a plain error with a message, and that every accepted spec
// survives a round trip through YAML unchanged. The seed corpus is the
// examples plus spec/testdata/fuzz/FuzzLoad.
func FuzzLoad(f *testing.F) {
	for _, glob := range []string{"../examples/*.yaml", "../examples/invalid/*.yaml"} {
		files, _ := filepath.Glob(glob)
		for _, p := range files {
			data, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, _, err := Parse("fuzz.yaml", data)
		if err != nil {
			var serr *Error
			if errors.As(err, &serr) && len(serr.Problems) == 0 {
				t.Fatalf("a spec.Error with no problems for %q", data)
			}
			if err.Error() == "" {
				t.Fatalf("an empty error for %q", data)
			}
			return
		}
		if _, problems := Validate(c); len(problems) > 0 {
			t.Fatalf("accepted spec fails Validate: %v", problems)
		}
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("marshal accepted spec: %v", err)
		}
		c2, _, err := Parse("roundtrip.yaml", out)
		if err != nil {
			t.Fatalf("round trip of %q: %v\n%s", data, err, out)
		}
		if c.Hash() != c2.Hash() {
			t.Fatalf("round trip changed the spec:\n%s", out)
		}
	})
}
