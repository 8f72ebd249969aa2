package cli

import (
	"github.com/spf13/cobra"
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
	_, b, obs, err := loadAndObserve(cmd.Context(), streams, o.file, &o.backend)
	if err != nil {
		return err
	}
	defer b.Close()
	emulated := b.emulatedControlPlane(cmd.Context())
	if o.output == "json" {
		return renderStatusJSON(streams.Out, obs, emulated)
	}
	return renderStatusText(streams.Out, obs, emulated)
}
