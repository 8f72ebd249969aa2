package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

type statusOptions struct {
	file    string
	output  string
	backend backendOptions
}

func newStatusCommand(streams IOStreams) *cobra.Command {
	var o statusOptions
	cmd := &cobra.Command{
		Use:   "status -f cluster.yaml [-o text|json]",
		Short: "Show the masters, their zones and IPs, and etcd's members, health and leader",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.output != "text" && o.output != "json" {
				return fmt.Errorf("-o %s: choose text or json", o.output)
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
		},
	}
	cmd.Flags().StringVarP(&o.file, "file", "f", "", "path of cluster.yaml")
	cmd.Flags().StringVarP(&o.output, "output", "o", "text", "text or json")
	o.backend.addFlags(cmd)
	_ = cmd.MarkFlagRequired("file")
	return cmd
}
