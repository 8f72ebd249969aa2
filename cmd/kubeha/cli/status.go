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
	advice := restoreAdvice(c, obs, o.file)
	if o.output == "json" {
		return renderStatusJSON(streams.Out, obs, emulated, advice)
	}
	if err := renderStatusText(streams.Out, obs, emulated); err != nil {
		return err
	}
	switch {
	case advice == nil:
	case advice.Underway != "":
		r := planner.RestoreUnderway(obs)
		fmt.Fprintf(streams.Out, "\nA restore (%s, from gs://%s/%s) is under way: finish it with %s\n", r.ID, r.Bucket, r.Object, advice.Command)
	case advice.Snapshot == "":
		fmt.Fprintf(streams.Out, "\nIf etcd has lost quorum or its data: %s (no snapshot of %s is in %s)\n", advice.Command, c.Metadata.Name, filepath.Clean(c.BackupDir()))
	default:
		fmt.Fprintf(streams.Out, "\nIf etcd has lost quorum or its data: %s restores its newest snapshot, %s (revision %d, taken %s)\n",
			advice.Command, advice.Snapshot, advice.Revision, advice.Taken.UTC().Format(time.RFC3339))
	}
	return nil
}

// restoreAdvice says, when etcd has lost quorum or does not answer while
// masters exist, how to restore it and from which snapshot; and when a
// restore is under way, how to finish it. nil otherwise.
func restoreAdvice(c *spec.Cluster, obs *state.Cluster, file string) *StatusRestore {
	if r := planner.RestoreUnderway(obs); r != nil && (!obs.Etcd.Reachable || obs.LostQuorum()) {
		return &StatusRestore{Underway: r.ID, Command: "kubeha restore -f " + file}
	}
	if !obs.LostQuorum() && (obs.Etcd.Reachable || len(obs.Instances) == 0) {
		return nil
	}
	newest := newestOrNone(c)
	if newest == nil {
		return &StatusRestore{Command: "kubeha restore -f " + file + " --from SNAPSHOT"}
	}
	return &StatusRestore{Snapshot: newest.File, Revision: newest.Revision, Taken: newest.Taken.UTC(), Command: "kubeha restore -f " + file}
}
