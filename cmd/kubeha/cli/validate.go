package cli

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kubeha/kubeha/spec"
)

type validateOptions struct {
	file string
}

func newValidateCommand(streams IOStreams) *cobra.Command {
	var o validateOptions
	cmd := newCommand("validate", cobra.NoArgs, func(*cobra.Command, []string) error { return runValidate(streams, o) })
	addFileFlag(cmd, &o.file, "path of cluster.yaml (- for standard input)", false)
	return cmd
}

func runValidate(streams IOStreams, o validateOptions) error {
	c, warnings, err := loadSpec(streams, o.file)
	if err != nil {
		return err
	}
	zones := make([]string, 0, len(c.Spec.Masters.Zones))
	for _, zc := range c.Spec.Spread() {
		if zc.Count > 0 {
			zones = append(zones, fmt.Sprintf("%s=%d", zc.Zone, zc.Count))
		}
	}
	fmt.Fprintf(streams.Out, "%s: valid: cluster %s, %d master(s) in %s (project %s)",
		o.file, c.Metadata.Name, c.Spec.Masters.Replicas, strings.Join(zones, ", "), c.Spec.GCE.Project)
	if n := len(warnings); n > 0 {
		fmt.Fprintf(streams.Out, ", %d warning(s)", n)
	}
	fmt.Fprintln(streams.Out)
	return nil
}

// loadSpec loads a spec and prints its warnings to the error stream; on
// failure it prints every problem and returns errReported.
func loadSpec(streams IOStreams, file string) (*spec.Cluster, []spec.Problem, error) {
	c, warnings, err := spec.Load(file)
	if err != nil {
		fmt.Fprintln(streams.ErrOut, err)
		return nil, nil, errReported
	}
	for _, w := range warnings {
		if w.Line > 0 {
			fmt.Fprintf(streams.ErrOut, "warning: %s:%s\n", file, w)
		} else {
			fmt.Fprintf(streams.ErrOut, "warning: %s: %s\n", file, w)
		}
	}
	return c, warnings, nil
}
