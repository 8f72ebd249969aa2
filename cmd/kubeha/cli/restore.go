package cli

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubeha/kubeha/executor"
	"github.com/kubeha/kubeha/internal/snapshots"
	"github.com/kubeha/kubeha/planner"
	"github.com/kubeha/kubeha/spec"
)

type restoreOptions struct {
	clusterOptions
	execution
	from  string
	force bool
}

func newRestoreCommand(streams IOStreams) *cobra.Command {
	var o restoreOptions
	cmd := newCommand("restore", cobra.NoArgs, func(cmd *cobra.Command, _ []string) error { return runRestore(cmd, streams, o) })
	o.addFlags(cmd, "path of cluster.yaml", false)
	o.addExecutionFlags(cmd, "restore")
	cmd.Flags().StringVar(&o.from, "from", "", "the snapshot to restore (default: the cluster's newest in backups/ beside the PKI)")
	cmd.Flags().BoolVar(&o.force, "force", false, "restore even though etcd has quorum (a snapshot of the current data is saved first)")
	return cmd
}

func runRestore(cmd *cobra.Command, streams IOStreams, o restoreOptions) error {
	if err := checkOutput(o.output, "text", "json"); err != nil {
		return err
	}
	ctx := cmd.Context()
	c, _, err := loadSpec(streams, o.file)
	if err != nil {
		return err
	}
	b, obs, _, err := connectAndObserve(ctx, &o.backend, c)
	if err != nil {
		return err
	}
	defer b.Close()
	if b.Storage == nil {
		return fmt.Errorf("restore cluster %s: no Cloud Storage client for %s", c.Metadata.Name, b.kind)
	}
	from := o.from
	if r := planner.RestoreUnderway(obs); r != nil && from == "" {
		// A restore under way is finished with its own snapshot.
		if _, file, ok := strings.Cut(r.Object, r.ID+"-"); ok {
			from = filepath.Join(c.BackupDir(), file)
		}
	}
	snap, err := snapshotToRestore(c, from)
	if err != nil {
		return err
	}
	id := "r" + strings.ToLower(time.Now().UTC().Format("20060102t150405"))
	plan, err := planner.Restore(c, obs, planner.RestoreOptions{Snapshot: snap, ID: id, Force: o.force,
		Bucket: spec.RestoreBucketName(c.Spec.GCE.Project, c.Metadata.Name)})
	if err != nil {
		return fmt.Errorf("restore cluster %s: %w", c.Metadata.Name, err)
	}
	downloads, err := executor.ResolveDownloads(ctx, plan, c, obs, b.downloads(ctx), nil)
	if err != nil {
		return fmt.Errorf("restore cluster %s: %w", c.Metadata.Name, err)
	}
	e := o.execution
	e.downloads = downloads
	if err := carryOut(ctx, streams, b, c, obs, plan, e); err != nil {
		return err
	}
	fmt.Fprintf(streams.ErrOut, "Cluster %s is restored from %s (revision %d, taken %s). Run kubeha apply -f %s to converge it to its spec.\n",
		c.Metadata.Name, snap.File, snap.Revision, snap.Taken.UTC().Format(time.RFC3339), o.file)
	return nil
}

// snapshotToRestore is the snapshot a restore starts from: the file given,
// or the cluster's newest in its backups directory (nil when there is
// none: the planner refuses, saying so).
func snapshotToRestore(c *spec.Cluster, from string) (*planner.Snapshot, error) {
	if from == "" {
		newest, err := newestSnapshot(c)
		if err != nil || newest == nil {
			return nil, err
		}
		from = filepath.Join(c.BackupDir(), newest.File)
	}
	return describeSnapshot(c, from)
}

// snapshotName is TIME-CLUSTER-WHY-rREV.db, as the executor names them.
func snapshotName(cluster string) *regexp.Regexp {
	return regexp.MustCompile(`^(\d{8}T\d{6}\.\d{3}Z)-` + regexp.QuoteMeta(cluster) + `-.*-r(\d+)\.db$`)
}

// newestSnapshot is the cluster's newest snapshot in its backups
// directory, or nil.
func newestSnapshot(c *spec.Cluster) (*planner.Snapshot, error) {
	re := snapshotName(c.Metadata.Name)
	name, err := newestBackup(c, re)
	if name == "" || err != nil {
		return nil, err
	}
	m := re.FindStringSubmatch(name)
	rev, _ := strconv.ParseInt(m[2], 10, 64)
	taken, _ := time.Parse("20060102T150405.000Z", m[1])
	return &planner.Snapshot{File: name, Revision: rev, Taken: taken}, nil
}

// newestOrNone is newestSnapshot for a refusal's advice: a backups
// directory that cannot be read names none.
func newestOrNone(c *spec.Cluster) *planner.Snapshot {
	s, _ := newestSnapshot(c)
	return s
}

// describeSnapshot reads a snapshot file: its digest, and its revision and
// time (from its name when kubeha saved it, else from etcd's own header
// and the file's time). A snapshot outside the backups directory is
// copied there first, so that the restore (and a restore run again) reads
// it from one place.
func describeSnapshot(c *spec.Cluster, path string) (*planner.Snapshot, error) {
	info, err := snapshots.Describe(path)
	if err != nil {
		return nil, fmt.Errorf("restore cluster %s: %w", c.Metadata.Name, err)
	}
	dir := filepath.Clean(c.BackupDir())
	if filepath.Clean(filepath.Dir(path)) != dir {
		if err := snapshots.CopyInto(path, dir); err != nil {
			return nil, fmt.Errorf("restore cluster %s: %w", c.Metadata.Name, err)
		}
	}
	s := &planner.Snapshot{File: filepath.Base(path), SHA256: info.SHA256, Revision: info.Revision, Taken: info.ModTime}
	if m := snapshotName(c.Metadata.Name).FindStringSubmatch(s.File); m != nil {
		s.Taken, _ = time.Parse("20060102T150405.000Z", m[1])
	}
	return s, nil
}
