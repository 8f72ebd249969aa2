package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kubeha/kubeha/executor"
	"github.com/kubeha/kubeha/planner"
	"github.com/kubeha/kubeha/planner/planfile"
	"github.com/kubeha/kubeha/spec"
)

type applyOptions struct {
	clusterOptions
	execution
	replace []string
}

func newApplyCommand(streams IOStreams) *cobra.Command {
	var o applyOptions
	cmd := newCommand("apply", cobra.MaximumNArgs(1), func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 && o.file == "" {
			return errors.New("give -f cluster.yaml, or a plan saved with kubeha plan --out")
		}
		if err := checkOutput(o.output, "text", "json"); err != nil {
			return err
		}
		saved := ""
		if len(args) == 1 {
			saved = args[0]
		}
		return runApply(cmd, streams, o, saved)
	})
	o.addFlags(cmd, "path of cluster.yaml", true)
	o.addExecutionFlags(cmd, "apply")
	cmd.Flags().StringArrayVar(&o.replace, "replace", nil, "replace this master in its zone (repeatable)")
	return cmd
}

func runApply(cmd *cobra.Command, streams IOStreams, o applyOptions, savedPath string) error {
	ctx := cmd.Context()
	var (
		c     *spec.Cluster
		saved *planner.Saved
		err   error
	)
	if savedPath != "" {
		if saved, err = planfile.Read(savedPath); err != nil {
			return err
		}
		c = saved.Spec
		o.replace = saved.Replace
	}
	var current *spec.Cluster // the spec file as it is now
	from := o.file
	if saved != nil && from == "" {
		if _, statErr := os.Stat(saved.SpecPath); statErr == nil {
			from = saved.SpecPath
		}
	}
	if from != "" {
		if current, _, err = loadSpec(streams, from); err != nil {
			return err
		}
		if saved == nil || o.file != "" {
			c = current // relative paths (pki.dir) resolve from the file given
		}
	}
	// Nothing is written (not the health record, not the PKI) before a
	// saved plan is accepted.
	b, obs, record, err := connectAndObserve(ctx, &o.backend, c)
	if err != nil {
		return err
	}
	defer b.Close()
	var plan *planner.Plan
	addons, err := executor.AddonsDigest(c)
	if err != nil {
		return err
	}
	if saved != nil {
		if plan, err = saved.Check(current, obs, addons); err != nil {
			return fmt.Errorf("apply %s: %w", savedPath, err)
		}
	} else if plan, err = planner.ComputeWith(c, obs, planner.Options{Replace: o.replace, Addons: addons, NewestSnapshot: newestOrNone(c)}); err != nil {
		return fmt.Errorf("plan cluster %s: %w", c.Metadata.Name, err)
	}
	var pinned []planner.Kubelet // a saved plan's digests are the ones reviewed
	if saved != nil {
		pinned = saved.Plan.Kubelets
	}
	downloads, err := executor.ResolveDownloads(ctx, plan, c, obs, b.downloads(ctx), pinned)
	if err != nil {
		return fmt.Errorf("apply to cluster %s: %w", c.Metadata.Name, err)
	}
	if err := record(); err != nil {
		return err
	}
	e := o.execution
	e.autoApprove = e.autoApprove || savedPath != "" // a saved plan was approved when it was reviewed
	e.downloads = downloads
	return carryOut(ctx, streams, b, c, obs, plan, e)
}

// confirm asks on a terminal, and refuses without one.
func confirm(streams IOStreams, verb, question string) error {
	f, ok := streams.In.(*os.File)
	if ok {
		fi, err := f.Stat()
		ok = err == nil && fi.Mode()&os.ModeCharDevice != 0
	}
	if !ok {
		return fmt.Errorf("no terminal to confirm on: pass --auto-approve to %s without asking", verb)
	}
	fmt.Fprintf(streams.Out, "\n%s Only 'yes' is accepted: ", question)
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil && err != io.EOF {
		return fmt.Errorf("read the answer: %w", err)
	}
	if strings.TrimSpace(line) != "yes" {
		return fmt.Errorf("%s cancelled: nothing was changed", verb)
	}
	return nil
}
