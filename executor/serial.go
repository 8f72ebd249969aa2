package executor

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// A VM whose boot failed: the guest agent writes the startup script's exit
// status to serial port 1, so a member that never starts because its
// script failed is told from one still booting without waiting out the gate.

// errBootFailed says a master's startup script failed.
var errBootFailed = errors.New("its startup script failed")

// bootCheckEvery is how often a wait for a member to start reads the VM's
// serial port: one request every 2 s per member that is not up yet.
const bootCheckEvery = 2 * time.Second

// scriptExit is the guest agent's line for the startup script's outcome.
var scriptExit = regexp.MustCompile(`startup-script exit status (\d+)|Script "startup-script" failed with error: (.*)`)

// bootCheck is the check started makes of instance name: an error
// wrapping errBootFailed when its serial port says the startup script
// failed.
func (x *executor) bootCheck(zone, name string) func(context.Context) error {
	var next int64
	var seen strings.Builder
	return func(ctx context.Context) error {
		out, err := x.o.Compute.Instances.GetSerialPortOutput(x.project(), zone, name).Port(1).Start(next).Context(ctx).Do()
		if err != nil {
			return nil // no verdict: go on waiting for the member
		}
		next = out.Next
		seen.WriteString(out.Contents)
		for _, line := range strings.Split(seen.String(), "\n") {
			m := scriptExit.FindStringSubmatch(line)
			if m == nil || m[1] == "0" {
				continue
			}
			return fmt.Errorf("master %s: %w (serial port 1: %s): the VM runs, but its etcd never starts. Read the rest with gcloud compute instances get-serial-port-output %s --zone %s; the next apply replaces the master",
				name, errBootFailed, tail(seen.String(), 3), name, zone)
		}
		return nil
	}
}

// tail is the last n lines of text, joined.
func tail(text string, n int) string {
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
