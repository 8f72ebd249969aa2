package cli

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubeha/kubeha/planner"
	"github.com/kubeha/kubeha/spec"
	"github.com/kubeha/kubeha/state"
)

type statusOptions struct {
	clusterOptions
	output string
}

func newStatusCommand(streams IOStreams) *cobra.Command {
	var o statusOptions
	cmd := newCommand("status", cobra.NoArgs, func(cmd *cobra.Command, _ []string) error { return runStatus(cmd, streams, o) })
	o.addFlags(cmd, "path of cluster.yaml", false)
	cmd.Flags().StringVarP(&o.output, "output", "o", "text", "text or json")
	return cmd
}

func runStatus(cmd *cobra.Command, streams IOStreams, o statusOptions) error {
	if err := checkOutput(o.output, "text", "json"); err != nil {
		return err
	}
	c, b, obs, err := loadAndObserve(cmd.Context(), streams, o.file, &o.backend)
	if err != nil {
		return err
	}
	defer b.Close()
	emulated := b.emulatedControlPlane(cmd.Context())
	if o.output == "json" {
		return renderStatusJSON(streams.Out, obs, emulated)
	}
	if err := renderStatusText(streams.Out, obs, emulated); err != nil {
		return err
	}
	if advice := restoreStatus(c, obs, o.file); advice != "" {
		fmt.Fprintln(streams.Out, advice)
	}
	return nil
}

// restoreStatus says, when etcd has lost quorum or does not answer while
// masters exist, how to restore it and from which snapshot; and when a
// restore is under way, how to finish it.
func restoreStatus(c *spec.Cluster, obs *state.Cluster, file string) string {
	if r := planner.RestoreUnderway(obs); r != nil && (!obs.Etcd.Reachable || obs.LostQuorum()) {
		return fmt.Sprintf("\nA restore (%s, from gs://%s/%s) is under way: finish it with kubeha restore -f %s", r.ID, r.Bucket, r.Object, file)
	}
	if !obs.LostQuorum() && (obs.Etcd.Reachable || len(obs.Instances) == 0) {
		return ""
	}
	newest := newestOrNone(c)
	if newest == nil {
		return fmt.Sprintf("\nIf etcd has lost quorum or its data: kubeha restore -f %s --from SNAPSHOT (no snapshot of %s is in %s)", file, c.Metadata.Name, filepath.Clean(c.BackupDir()))
	}
	return fmt.Sprintf("\nIf etcd has lost quorum or its data: kubeha restore -f %s restores its newest snapshot, %s (revision %d, taken %s)",
		file, newest.File, newest.Revision, newest.Taken.UTC().Format(time.RFC3339))
}
