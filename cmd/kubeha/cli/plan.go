package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kubeha/kubeha/executor"
	"github.com/kubeha/kubeha/planner"
	"github.com/kubeha/kubeha/planner/planfile"
)

type planOptions struct {
	clusterOptions
	output           string
	out              string
	detailedExitcode bool
	replace          []string
}

func newPlanCommand(streams IOStreams) *cobra.Command {
	var o planOptions
	cmd := newCommand("plan", cobra.NoArgs, func(cmd *cobra.Command, _ []string) error { return runPlan(cmd, streams, o) })
	o.addFlags(cmd, "path of cluster.yaml", false)
	cmd.Flags().StringVarP(&o.output, "output", "o", "text", "text, json or markdown (for pull-request comments)")
	cmd.Flags().StringVar(&o.out, "out", "", "also save the plan, with what it was computed against, for `kubeha apply PLAN`")
	cmd.Flags().BoolVar(&o.detailedExitcode, "detailed-exitcode", false, "exit 2 when the plan has changes")
	cmd.Flags().StringArrayVar(&o.replace, "replace", nil, "replace this master in its zone (repeatable)")
	return cmd
}

func runPlan(cmd *cobra.Command, streams IOStreams, o planOptions) error {
	view, err := planViewFor(o.output)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	c, b, obs, err := loadAndObserve(ctx, streams, o.file, &o.backend)
	if err != nil {
		return err
	}
	defer b.Close()
	addons, err := executor.AddonsDigest(c)
	if err != nil {
		return err
	}
	newest, err := newestSnapshot(c)
	if err != nil {
		return err
	}
	opts := planner.Options{Replace: o.replace, Addons: addons, NewestSnapshot: newest}
	p, err := planner.ComputeWith(c, obs, opts)
	if err != nil {
		return fmt.Errorf("plan cluster %s: %w", c.Metadata.Name, err)
	}
	if _, err := executor.ResolveDownloads(ctx, p, c, obs, b.downloads(ctx), nil); err != nil {
		return fmt.Errorf("plan cluster %s: %w", c.Metadata.Name, err)
	}
	if err := view.Render(streams.Out, p); err != nil {
		return err
	}
	if o.out != "" {
		if err := planfile.Write(o.out, planner.NewSaved(p, c, obs, opts)); err != nil {
			return err
		}
		fmt.Fprintf(streams.ErrOut, "Saved the plan to %s: apply it with kubeha apply %s\n", o.out, o.out)
	}
	if o.detailedExitcode && !p.NoChanges {
		return &exitError{code: ExitChanges}
	}
	return nil
}
