package executor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/kubeha/kubeha/planner"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// backup saves an etcd snapshot before a loss. Before a member removal it
// takes one whenever etcd's revision moved since this apply's last
// snapshot; before a disk deletion (always is set) it always takes one.
// The snapshot comes from member (the disk's own member) while that member
// still runs, else from the leader (see snapshotSource). With no
// etcd yet (a bootstrap) there is nothing to save; with an etcd that
// cannot give a snapshot, the change is refused.
func (x *executor) backup(ctx context.Context, s *planner.Step, why string, always bool, member string) error {
	if x.o.BackupDir == "" || !x.etcd.connected() {
		return nil
	}
	refused := "save an etcd snapshot before the change (nothing was changed)"
	// A member can stop under the snapshot (a removal running beside this
	// step): the source is chosen again and the snapshot taken again.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		if attempt > 0 {
			if err := sleep(ctx, time.Second); err != nil {
				return fmt.Errorf("%s: %w", refused, err)
			}
		}
		h, err := x.etcd.check(ctx, x.etcd.timeout, 0)
		if err != nil {
			lastErr = err
			continue
		}
		src := snapshotSource(h, member)
		if src == nil {
			lastErr = fmt.Errorf("no etcd member can give one: %s", h)
			continue
		}
		x.mu.Lock()
		moved, lastFile := src.Revision != x.lastSnap, x.lastSnapFile
		x.mu.Unlock()
		if !always && !moved {
			x.progress(s, fmt.Sprintf("etcd snapshot at revision %d: unchanged since %s", src.Revision, lastFile))
			return nil
		}
		name := fmt.Sprintf("%s-%s-%s-r%d.db", time.Now().UTC().Format("20060102T150405.000Z"), x.cluster(), why, src.Revision)
		path, err := x.etcd.snapshot(ctx, src.Endpoint, x.o.BackupDir, name, x.o.Keep)
		if err != nil {
			lastErr = err
			continue
		}
		x.mu.Lock()
		x.lastSnap, x.lastSnapFile = src.Revision, path
		x.mu.Unlock()
		x.progress(s, fmt.Sprintf("etcd snapshot at revision %d from %s: saved %s", src.Revision, src.Name, path))
		return nil
	}
	return fmt.Errorf("%s: %w", refused, lastErr)
}

// snapshotSource is the member a snapshot comes from: the named member
// (a disk's own) while it runs, else the leader, which has every committed
// change and is never removed before leadership has moved, else the
// healthy voter with the highest raft index.
func snapshotSource(h health, member string) *memberHealth {
	var src *memberHealth
	for i, m := range h.Members {
		if !m.Healthy {
			continue
		}
		if member != "" && m.Name == member {
			return &h.Members[i]
		}
		if m.Learner {
			continue
		}
		if src == nil || better(m, *src) {
			src = &h.Members[i]
		}
	}
	return src
}

// better says a is a better snapshot source than b: the leader first,
// then the higher raft index.
func better(a, b memberHealth) bool {
	aLeads, bLeads := a.ID == a.Leader, b.ID == b.Leader
	if aLeads != bLeads {
		return aLeads
	}
	return a.RaftIndex > b.RaftIndex
}

// snapshot saves a snapshot of the member at endpoint to dir and keeps the
// newest keep files.
func (e *etcd) snapshot(ctx context.Context, endpoint, dir, name string, keep int) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create backup directory: %w", err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: e.timeout, TLS: e.tls, Logger: zap.NewNop()})
	if err != nil {
		return "", fmt.Errorf("connect to etcd at %s: %w", endpoint, err)
	}
	defer cli.Close()
	cctx, cancel := context.WithTimeout(ctx, 5*e.gate)
	defer cancel()
	rc, err := cli.Snapshot(cctx)
	if err != nil {
		return "", fmt.Errorf("take an etcd snapshot from %s: %w", endpoint, err)
	}
	defer rc.Close()
	path := filepath.Join(dir, name)
	tmp, err := os.CreateTemp(dir, ".snapshot-*")
	if err != nil {
		return "", fmt.Errorf("save etcd snapshot: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return "", fmt.Errorf("save etcd snapshot: %w", err)
	}
	n, err := io.Copy(tmp, rc)
	if err == nil && n == 0 {
		err = errors.New("empty snapshot")
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("save etcd snapshot: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("save etcd snapshot: %w", err)
	}
	prune(dir, keep)
	return path, nil
}

// prune keeps the newest keep snapshots.
func prune(dir string, keep int) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	var snaps []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".db") {
			snaps = append(snaps, e.Name())
		}
	}
	sort.Strings(snaps) // names start with a UTC timestamp
	for len(snaps) > keep {
		os.Remove(filepath.Join(dir, snaps[0]))
		snaps = snaps[1:]
	}
}
