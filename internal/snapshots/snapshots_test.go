package snapshots

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDescribeRefusesWhatIsNoSnapshot: a file that is not an etcd
// snapshot is refused naming it, and a missing one says so.
func TestDescribeRefusesWhatIsNoSnapshot(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "notes.db")
	if err := os.WriteFile(bad, []byte("not bolt"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Describe(bad); err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "not an etcd snapshot") {
		t.Errorf("a file that is no snapshot: %v", err)
	}
	if _, err := Describe(filepath.Join(dir, "missing.db")); err == nil || !strings.Contains(err.Error(), "missing.db") {
		t.Errorf("a missing file: %v", err)
	}
	if _, err := Describe(dir); err == nil || !strings.Contains(err.Error(), "not a file") {
		t.Errorf("a directory: %v", err)
	}
}

// TestCopyIntoKeepsItPrivate: a snapshot copied into the backups directory
// is 0600 (it holds every secret of the cluster); copied again it is
// kept, and another file of that name is refused.
func TestCopyIntoKeepsItPrivate(t *testing.T) {
	src := filepath.Join(t.TempDir(), "by-hand.db")
	if err := os.WriteFile(src, []byte("snapshot"), 0o644); err != nil {
		t.Fatal(err)
	}
	backups := filepath.Join(t.TempDir(), "backups")
	if err := CopyInto(src, backups); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(backups, "by-hand.db"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("copied: %v %v", st, err)
	}
	if err := CopyInto(src, backups); err != nil {
		t.Errorf("the same snapshot again: %v", err)
	}
	os.WriteFile(src, []byte("changed"), 0o644)
	if err := CopyInto(src, backups); err == nil || !strings.Contains(err.Error(), "another file of that name") {
		t.Errorf("another file of the same name: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(backups, "by-hand.db")); string(got) != "snapshot" {
		t.Errorf("the copy there was replaced: %q", got)
	}
	if entries, _ := os.ReadDir(backups); len(entries) != 1 {
		t.Errorf("left behind: %v", entries)
	}
}
