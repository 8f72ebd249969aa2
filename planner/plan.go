package planner

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/kubeha/kubeha/spec"
	"github.com/kubeha/kubeha/state"
)

// The planner's entry point: Compute runs the passes of build in order.

// Options change what a plan does.
type Options struct {
	// Replace names replicas to replace in their own zone (apply --replace).
	Replace []string
	// Addons is the digest of the add-ons the masters should run
	// (metadata.AddonsDigest of spec.addons); "" plans no add-on update.
	Addons string
	// NewestSnapshot is the cluster's newest snapshot in the backups
	// directory, which a refusal for lost quorum names (nil: none).
	NewestSnapshot *Snapshot
}

// Compute returns the plan that takes observed to desired: ComputeWith with
// no options. (DESIGN.md names it Plan; Go cannot have a function and the
// Plan type under one name.)
func Compute(desired *spec.Cluster, observed *state.Cluster) (*Plan, error) {
	return ComputeWith(desired, observed, Options{})
}

// ErrRefused wraps every refusal, so callers can tell a refusal from a bug.
var ErrRefused = errors.New("refused")

func refuse(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrRefused}, args...)...)
}

// ComputeWith returns the plan that takes observed to desired, or refuses
// with an error that says what to do.
func ComputeWith(desired *spec.Cluster, observed *state.Cluster, opts Options) (*Plan, error) {
	if err := preflight(desired, observed, opts); err != nil {
		return nil, err
	}
	b := newBuilder(desired, observed, opts)
	if err := b.build(); err != nil {
		return nil, err
	}
	return b.finish(), nil
}

// build runs every pass, in order. A refusal in any pass ends the plan.
func (b *builder) build() error {
	b.identity() // the masters' service account
	b.network()  // the firewalls and the static IP
	if b.startStopped() {
		return b.err // no master runs: etcd cannot be observed until they start
	}
	b.adopt()             // label the masters kube-up made
	b.orphans()           // etcd members without a master
	b.membershipChanges() // removals, additions, replacements; the load balancer
	b.rollbackGuard()     // an upgrade cut short, rolled back
	if _, half, _ := halfBootstrapped(b.obs); !half {
		b.renewals()     // certificates of the masters that keep running
		b.addonUpdates() // the add-ons of the masters that keep running
	}
	b.leaks() // disks and addresses of no master
	return b.err
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

func memberLabel(m *state.Member) string {
	if m.Instance != "" {
		return m.Instance
	}
	if m.Name != "" {
		return m.Name
	}
	return fmt.Sprintf("member-%x", m.ID)
}

func masters(n int) string {
	if n == 1 {
		return "1 master"
	}
	return strconv.Itoa(n) + " masters"
}
