package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// IOStreams are the standard streams of a command.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer
}

// Exit codes (DESIGN.md §5).
const (
	ExitOK      = 0
	ExitError   = 1
	ExitChanges = 2 // plan --detailed-exitcode: the plan has changes
)

// exitError carries an exit code other than 1 out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

// silentError is an error that has already been reported to the user.
var errReported = errors.New("reported")

// Main runs kubeha with the process's arguments and exits.
func Main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Run(ctx, IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}, os.Args[1:])
	stop()
	os.Exit(code)
}

// Run runs kubeha with args and returns the exit code.
func Run(ctx context.Context, streams IOStreams, args []string) int {
	root := newRootCommand(streams)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && !errors.Is(ee.err, errReported) {
			fmt.Fprintln(streams.ErrOut, "Error:", ee.err)
		}
		return ee.code
	}
	if !errors.Is(err, errReported) {
		fmt.Fprintln(streams.ErrOut, "Error:", err)
	}
	return ExitError
}

func newRootCommand(streams IOStreams) *cobra.Command {
	root := newCommand("kubeha", nil, nil)
	root.SilenceUsage, root.SilenceErrors = true, true
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	root.AddCommand(
		newValidateCommand(streams),
		newVersionCommand(streams),
		newSimCommand(streams),
		newPlanCommand(streams),
		newStatusCommand(streams),
		newKubeconfigCommand(streams),
		newApplyCommand(streams),
		newWatchCommand(streams),
		newDestroyCommand(streams),
		newRestoreCommand(streams),
		newJoinCommand(streams),
	)
	return root
}
