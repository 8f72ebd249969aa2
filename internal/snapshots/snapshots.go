package snapshots

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.uber.org/zap"
)

// Info is what a restore needs of a snapshot file.
type Info struct {
	SHA256   string
	Revision int64
	Keys     int
	ModTime  time.Time
}

// Describe reads a snapshot: its SHA-256, and the revision and number of
// keys etcd's own snapshot status finds in it. A file that is not an etcd
// snapshot is an error naming it.
func Describe(path string) (*Info, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read snapshot: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("read snapshot %s: not a file", path)
	}
	sum, err := Digest(path)
	if err != nil {
		return nil, err
	}
	status, err := snapshot.NewV3(zap.NewNop()).Status(path)
	if err != nil {
		return nil, fmt.Errorf("read snapshot %s: it is not an etcd snapshot (etcdutl snapshot status: %v)", path, err)
	}
	return &Info{SHA256: sum, Revision: status.Revision, Keys: status.TotalKey, ModTime: st.ModTime().UTC()}, nil
}

// Digest is the SHA-256 of a snapshot file, hex.
func Digest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("read snapshot: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read snapshot %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// CopyInto copies a snapshot into dir under its own name, 0600 (a
// snapshot holds every secret of the cluster). The same file there already
// is kept; another file of that name is an error naming both.
func CopyInto(path, dir string) error {
	dst := filepath.Join(dir, filepath.Base(path))
	if _, err := os.Stat(dst); err == nil {
		a, err := Digest(path)
		if err != nil {
			return err
		}
		b, err := Digest(dst)
		if err != nil {
			return err
		}
		if a != b {
			return fmt.Errorf("copy snapshot %s into %s: another file of that name is there: rename one of them", path, dir)
		}
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("copy snapshot into %s: %w", dir, err)
	}
	src, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("copy snapshot: %w", err)
	}
	defer src.Close()
	tmp, err := os.CreateTemp(dir, ".copy-*")
	if err != nil {
		return fmt.Errorf("copy snapshot into %s: %w", dir, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := io.Copy(tmp, src); err != nil {
		tmp.Close()
		return fmt.Errorf("copy snapshot %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("copy snapshot %s: %w", path, err)
	}
	return os.Rename(tmp.Name(), dst)
}
