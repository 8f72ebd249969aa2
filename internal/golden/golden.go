// Package golden is for tests that compare what they produce with files
// checked in beside them ("golden files"). One flag, -update, rewrites
// them in every package whose tests use it (go test ./planner ./metadata
// ./spec ./cmd/kubeha/cli -update); review the diff before committing it.
package golden

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files from what the tests produce (review the diff before committing)")

// Update says whether this run rewrites golden files (-update).
func Update() bool { return *update }

// Check compares got with the file at path; with -update it writes got
// there first.
func Check(t testing.TB, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -update writes it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is not what the test produced (go test -update rewrites it; review the diff):\n%s", path, got)
	}
}

// Files are the files that match pattern; fewer than atLeast fails the
// test, so that a moved directory cannot pass by testing nothing.
func Files(t testing.TB, pattern string, atLeast int) []string {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < atLeast {
		t.Fatalf("want at least %d files matching %s, found %d", atLeast, pattern, len(files))
	}
	return files
}
