package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kubeha/kubeha/pki"
)

var snapRe = regexp.MustCompile(`-(before-remove|before-delete)-(.+)-r(\d+)\.db$`)

// TestSnapshotBeforeEveryLoss: across a 5 -> 1 scale-down, with a writer
// putting a key every 100ms, every member removal is covered by a snapshot
// at the revision etcd had then (its own, or the last one when nothing was
// written since), every disk deletion saves its own, the revisions never go
// back, and every key written is still there.
func TestSnapshotBeforeEveryLoss(t *testing.T) {
	c, s := appliedCluster(t, "snaps", 5, false)
	cli := c.etcd(s)
	stop := make(chan struct{})
	var (
		wg      sync.WaitGroup
		written []string
	)
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			key := fmt.Sprintf("/snaps/%05d", i)
			if _, err := cli.Put(ctx, key, "v"); err == nil {
				written = append(written, key)
			}
			cancel()
		}
	})
	c.write(1, false)
	r := c.apply()
	close(stop)
	wg.Wait()
	s = c.converged(1)

	removals := len(regexp.MustCompile(`remove-etcd-member \S+ done in`).FindAllString(r.stdout, -1))
	deletions := len(regexp.MustCompile(`delete-disk \S+ done in`).FindAllString(r.stdout, -1))
	if removals != 4 || deletions != 4 {
		t.Fatalf("5 -> 1 removed %d members and deleted %d disks:\n%s", removals, deletions, r.stdout)
	}
	// Each removal and each disk deletion says which snapshot covers it:
	// one it saved, or the last one when the revision has not moved since.
	files, _ := filepath.Glob(filepath.Join(c.dir, "backups", "*.db"))
	sort.Strings(files)            // by time
	byRev := map[string][]string{} // revision -> files
	last := -1
	for _, f := range files {
		m := snapRe.FindStringSubmatch(f)
		if m == nil {
			t.Fatalf("snapshot %s does not say why and at which revision", f)
		}
		byRev[m[3]] = append(byRev[m[3]], f)
		rev, _ := strconv.Atoi(m[3])
		if rev < last {
			t.Errorf("snapshot %s at revision %d is older than the one before it (%d)", filepath.Base(f), rev, last)
		}
		last = rev
		if fi, err := os.Stat(f); err != nil || fi.Size() == 0 || fi.Mode().Perm() != 0o600 {
			t.Errorf("snapshot %s: %v", f, err)
		}
	}
	covered := regexp.MustCompile(`(?m)^(\[\s*\d+/\d+\] - (?:remove-etcd-member|delete-disk) \S+) etcd snapshot at revision (\d+)(: unchanged since | from \S+: saved )(\S+)$`)
	matches := covered.FindAllStringSubmatch(r.stdout, -1)
	if len(matches) != removals+deletions {
		t.Fatalf("%d removals and disk deletions say which snapshot covers them, want %d:\n%s", len(matches), removals+deletions, r.stdout)
	}
	saved := 0
	for _, m := range matches {
		if !slices.Contains(byRev[m[2]], m[4]) {
			t.Errorf("%s: covered by %s at revision %s, but the snapshots at that revision are %q", m[1], m[4], m[2], byRev[m[2]])
		}
		if strings.Contains(m[3], "saved") {
			saved++
		}
		if strings.Contains(m[1], "delete-disk") && !strings.Contains(m[3], "saved") {
			t.Errorf("%s: a disk deletion must save its own snapshot", m[1])
		}
	}
	if saved != len(files) {
		t.Errorf("%d snapshots saved, %d files", saved, len(files))
	}
	t.Logf("%d snapshots, the last at revision %d; %d keys written during the scale-down", len(files), last, len(written))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := c.etcd(s).Get(ctx, "/snaps/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, kv := range got.Kvs {
		have[string(kv.Key)] = true
	}
	for _, k := range written {
		if !have[k] {
			t.Errorf("key %s written during the scale-down is lost", k)
		}
	}
}

// TestForeignCertificates: with another cluster's etcd CA in the PKI
// directory, or another cluster's client certificate, plan reports a
// certificate problem naming the files, not an etcd that lost its data or
// quorum.
func TestForeignCertificates(t *testing.T) {
	c, _ := appliedCluster(t, "foreign", 1, false)
	dir := filepath.Join(c.dir, "pki")
	other, err := pki.Ensure(t.TempDir(), "elsewhere")
	if err != nil {
		t.Fatal(err)
	}
	swap := func(names ...string) func() {
		var saved [][]byte
		for _, n := range names {
			b, _ := os.ReadFile(filepath.Join(dir, n))
			saved = append(saved, b)
			o, _ := os.ReadFile(filepath.Join(other.Dir, n))
			if err := os.WriteFile(filepath.Join(dir, n), o, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return func() {
			for i, n := range names {
				os.WriteFile(filepath.Join(dir, n), saved[i], 0o600)
			}
		}
	}
	for _, tc := range []struct {
		name  string
		files []string
		want  string
	}{
		{"another etcd CA", []string{pki.EtcdCACert}, "not signed by kubeha's etcd CA"},
		{"another client certificate", []string{pki.ClientCertFile, pki.ClientKeyFile}, "refuses kubeha's client certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			restore := swap(tc.files...)
			defer restore()
			r := c.kubeha("plan", "-f", c.spec)
			if r.code != 1 || !strings.Contains(r.stderr, tc.want) || !strings.Contains(r.stderr, "do not trust each other's certificates") {
				t.Fatalf("plan with %s: exit %d\n%s%s", tc.name, r.code, r.stdout, r.stderr)
			}
			for _, f := range []string{pki.EtcdCACert, pki.ClientCertFile, pki.ClientKeyFile} {
				if !strings.Contains(r.stderr, filepath.Join(dir, f)) {
					t.Errorf("the error does not name %s:\n%s", f, r.stderr)
				}
			}
			if strings.Contains(r.stderr, "restore it from a snapshot") || strings.Contains(r.stderr, "lost") || strings.Contains(r.stderr, "does not answer") {
				t.Errorf("a certificate problem is diagnosed as a lost etcd:\n%s", r.stderr)
			}
			noKeyMaterial(t, "plan output", r.stdout, r.stderr)
		})
	}
	c.converged(1)
}
