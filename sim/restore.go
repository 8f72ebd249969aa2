package sim

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"

	"github.com/kubeha/kubeha/internal/atomicfile"
	"github.com/kubeha/kubeha/metadata"
)

// A restore on an etcd-only master: what the startup script does on a
// master of the whole control plane (restore_etcd), with etcdutl's own
// code. The snapshot comes from the emulator's Cloud Storage as the
// instance's service account may read it; the data directory is set aside
// (etcd.before-restore-ID), never deleted; the disk records the restore it
// applied (kubeha-restore-id), so that later boots start from the data as
// it is. Each step can be cut short and done again.

// restoreIDFile records, on the data disk, the last restore applied.
const restoreIDFile = "kubeha-restore-id"

// restore restores the member's data directory from r's snapshot unless
// its disk applied r already.
func (m *member) restore(r *metadata.Restore) error {
	if got, err := os.ReadFile(filepath.Join(m.dataDir, restoreIDFile)); err == nil && strings.TrimSpace(string(got)) == r.ID {
		return nil
	}
	if m.fetch == nil {
		return fmt.Errorf("restore %s: the member cannot reach Cloud Storage", r.ID)
	}
	data, err := m.fetch(r.Bucket, r.Object)
	if err != nil {
		return fmt.Errorf("restore %s: %w", r.ID, err)
	}
	sum := sha256.Sum256(data)
	if got := hex.EncodeToString(sum[:]); got != r.SHA256 {
		return fmt.Errorf("restore %s: gs://%s/%s hashes to %s, not %s: nothing restored", r.ID, r.Bucket, r.Object, got, r.SHA256)
	}
	file := filepath.Join(m.dataDir, "restore.db")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		return fmt.Errorf("restore %s: %w", r.ID, err)
	}
	defer os.Remove(file)
	dir, tmp, aside := filepath.Join(m.dataDir, "etcd"), filepath.Join(m.dataDir, "etcd.restoring"), filepath.Join(m.dataDir, "etcd.before-restore-"+r.ID)
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("restore %s: %w", r.ID, err)
	}
	err = snapshot.NewV3(zap.NewNop()).Restore(snapshot.RestoreConfig{SnapshotPath: file, Name: m.cfg.Name, OutputDataDir: tmp,
		PeerURLs: []string{m.cfg.PeerURL}, InitialCluster: m.cfg.InitialCluster, InitialClusterToken: r.Token,
		RevisionBump: r.RevisionBump, MarkCompacted: r.RevisionBump > 0})
	if err != nil {
		return fmt.Errorf("restore %s: etcdutl snapshot restore: %w", r.ID, err)
	}
	// The data before the restore is set aside once; a restore cut short
	// after that left only a restored directory in its place.
	if _, err := os.Stat(aside); errors.Is(err, fs.ErrNotExist) {
		if err := os.Rename(dir, aside); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("restore %s: set the data aside: %w", r.ID, err)
		}
	} else if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("restore %s: %w", r.ID, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("restore %s: %w", r.ID, err)
	}
	return atomicfile.Write(filepath.Join(m.dataDir, restoreIDFile), []byte(r.ID+"\n"), 0o600)
}
