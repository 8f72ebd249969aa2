package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"

	"github.com/spf13/cobra"
	"google.golang.org/api/googleapi"

	"github.com/kubeha/kubeha/planner"
	"github.com/kubeha/kubeha/spec"
	"github.com/kubeha/kubeha/state"
)

type destroyOptions struct {
	clusterOptions
	execution
	noSnapshot bool
}

func newDestroyCommand(streams IOStreams) *cobra.Command {
	var o destroyOptions
	cmd := newCommand("destroy", cobra.NoArgs, func(cmd *cobra.Command, _ []string) error { return runDestroy(cmd, streams, o) })
	o.addFlags(cmd, "path of cluster.yaml", false)
	o.addExecutionFlags(cmd, "destroy")
	cmd.Flags().BoolVar(&o.noSnapshot, "no-snapshot", false, "when etcd cannot give a final snapshot, delete its data without one")
	return cmd
}

func runDestroy(cmd *cobra.Command, streams IOStreams, o destroyOptions) error {
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
	final, err := interruptedDestroySnapshot(c)
	if err != nil {
		return err
	}
	bucket := restoreBucket(ctx, streams, b, c)
	plan, err := planner.Destroy(c, obs, planner.DestroyOptions{NoSnapshot: o.noSnapshot, FinalSnapshot: final, RestoreBucket: bucket})
	if err != nil {
		return fmt.Errorf("destroy cluster %s: %w", c.Metadata.Name, err)
	}
	if plan.NoChanges {
		fmt.Fprintf(streams.Out, "Nothing of cluster %s exists in project %s: nothing to destroy.\n", c.Metadata.Name, c.Spec.GCE.Project)
		return nil
	}
	if err := carryOut(ctx, streams, b, c, obs, plan, o.execution); err != nil {
		return err
	}
	// Nothing of the cluster is left: neither is its members' health record.
	if err := os.Remove(state.HealthPath(c.PKIDir(), c.Metadata.Name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove the health record of cluster %s: %w", c.Metadata.Name, err)
	}
	fmt.Fprintf(streams.ErrOut, "Cluster %s is destroyed. Kept on this machine: its PKI in %s and its etcd snapshots in %s.\n",
		c.Metadata.Name, c.PKIDir(), filepath.Clean(c.BackupDir()))
	return nil
}

// interruptedDestroySnapshot is the newest final snapshot a destroy of
// this cluster saved ("" when none): backups/TIME-CLUSTER-before-destroy-rREV.db.
func interruptedDestroySnapshot(c *spec.Cluster) (string, error) {
	re := regexp.MustCompile(`^\d{8}T\d{6}\.\d{3}Z-` + regexp.QuoteMeta(c.Metadata.Name) + `-before-destroy-r\d+\.db$`)
	name, err := newestBackup(c, re)
	if name == "" || err != nil {
		return "", err
	}
	return filepath.Join(filepath.Clean(c.BackupDir()), name), nil
}

// newestBackup is the newest file of the cluster's backups directory whose
// name matches re ("" when none): the names start with their time.
func newestBackup(c *spec.Cluster, re *regexp.Regexp) (string, error) {
	dir := c.BackupDir()
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("look for snapshots of cluster %s in %s: %w", c.Metadata.Name, dir, err)
	}
	var names []string
	for _, e := range entries {
		if re.MatchString(e.Name()) {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		return "", nil
	}
	sort.Strings(names)
	return names[len(names)-1], nil
}

// restoreBucket is the Cloud Storage bucket kubeha's restores of the
// cluster made, when it is there ("" when not). One kubeha cannot look
// into (no Cloud Storage permission: restores need it, destroys need not)
// is said and left.
func restoreBucket(ctx context.Context, streams IOStreams, b *backend, c *spec.Cluster) string {
	if b.Storage == nil {
		return ""
	}
	name := spec.RestoreBucketName(c.Spec.GCE.Project, c.Metadata.Name)
	_, err := b.Storage.Buckets.Get(name).Context(ctx).Do()
	var ge *googleapi.Error
	switch {
	case err == nil:
		return name
	case errors.As(err, &ge) && ge.Code == http.StatusNotFound:
		return ""
	}
	fmt.Fprintf(streams.ErrOut, "Warning: could not look for gs://%s, the bucket of the cluster's restores (%v): if a restore made it, delete it by hand.\n", name, err)
	return ""
}
