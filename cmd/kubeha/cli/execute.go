package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"time"

	"github.com/kubeha/kubeha/executor"
	"github.com/kubeha/kubeha/pki"
	"github.com/kubeha/kubeha/planner"
	"github.com/kubeha/kubeha/spec"
	"github.com/kubeha/kubeha/state"
	"github.com/spf13/cobra"
)

// execution is how apply and destroy carry out a plan.
type execution struct {
	verb        string // the command: "apply" or "destroy"
	autoApprove bool
	output      string
	parallelism int
	lockTimeout time.Duration
	downloads   spec.Downloads
}

// addExecutionFlags adds the flags of a command that carries out a plan.
func (e *execution) addExecutionFlags(cmd *cobra.Command, verb string) {
	e.verb = verb
	cmd.Flags().BoolVar(&e.autoApprove, "auto-approve", false, verb+" without asking")
	cmd.Flags().DurationVar(&e.lockTimeout, "lock-timeout", 0, "wait this long for another apply or destroy to finish (default: fail at once, naming it)")
	cmd.Flags().StringVarP(&e.output, "output", "o", "text", "progress as text lines, or json: one event per line")
	cmd.Flags().IntVar(&e.parallelism, "parallelism", executor.DefaultParallelism, "most steps at once")
}

// carryOut shows the plan, asks (unless auto-approved) and carries it out
// with progress, under the cluster's apply lock.
func carryOut(ctx context.Context, streams IOStreams, b *backend, c *spec.Cluster, obs *state.Cluster, plan *planner.Plan, e execution) error {
	p, err := pki.Ensure(c.PKIDir(), c.Metadata.Name)
	if err != nil {
		return err
	}
	progress := streams.Out
	if e.output == "json" {
		progress = streams.ErrOut
	}
	if err := (planText{}).Render(progress, plan); err != nil {
		return err
	}
	if plan.NoChanges {
		return nil
	}
	if !e.autoApprove {
		question := fmt.Sprintf("Apply these %d steps?", len(plan.Steps))
		if e.verb == "destroy" {
			question = fmt.Sprintf("Destroy cluster %s (project %s): carry out these %d steps?", c.Metadata.Name, c.Spec.GCE.Project, len(plan.Steps))
		}
		if err := confirm(streams, e.verb, question); err != nil {
			return err
		}
	}
	who := "kubeha"
	if u, err := user.Current(); err == nil {
		who = u.Username
	}
	host, _ := os.Hostname()
	view := newProgress(streams.Out, e.output)
	defer view.close()
	start := time.Now()
	err = executor.Apply(ctx, plan, executor.Options{
		Compute: b.Compute, Spec: c, Observed: obs, PKI: p, Parallelism: e.parallelism,
		BackupDir: c.BackupDir(), LockWait: e.lockTimeout,
		Who:   executor.Holder{Who: who, Host: host, PID: os.Getpid(), Since: time.Now().UTC()},
		Hooks: view, Downloads: e.downloads, IAM: b.IAM, Secrets: b.Secrets, SecretManagerURL: b.SecretManagerURL, Storage: b.Storage, StorageURL: b.StorageURL,
		APIPort: b.apiPort(ctx),
	})
	if errors.Is(err, executor.ErrInterrupted) {
		return fmt.Errorf("%w\nInterrupted: the cluster is in a safe state; run kubeha %s again to finish", err, e.verb)
	}
	if errors.Is(err, executor.ErrLocked) {
		return err
	}
	if err != nil {
		return fmt.Errorf("%w\n%s stopped at a failed step; no step was left half-done: fix the cause and run kubeha %s again", err, e.verb, e.verb)
	}
	view.complete(e.verb, plan, time.Since(start))
	return nil
}
