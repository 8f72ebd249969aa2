package executor

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	compute "google.golang.org/api/compute/v1"

	"github.com/kubeha/kubeha/planner"
	"github.com/kubeha/kubeha/spec"
)

// Steps: what every step shares (the lock and preflight of membership
// changes, the dispatch to the table of handlers) and the names and links
// of the cluster's resources.

func (x *executor) project() string { return x.o.Spec.Spec.GCE.Project }

func (x *executor) region() string { return x.o.Spec.Spec.GCE.Region }

func (x *executor) cluster() string { return x.o.Spec.Metadata.Name }

func (x *executor) zoneOf(instance string) (string, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if z, ok := x.zones[instance]; ok {
		return z, nil
	}
	return "", fmt.Errorf("no zone known for instance %s", instance)
}

func (x *executor) instanceLink(instance string) (string, error) {
	z, err := x.zoneOf(instance)
	if err != nil {
		return "", err
	}
	return "projects/" + x.project() + "/zones/" + z + "/instances/" + instance, nil
}

func (x *executor) poolLink() string {
	return "projects/" + x.project() + "/regions/" + x.region() + "/targetPools/" + spec.MasterName(x.cluster())
}

// addressIP reads a reserved address's IP. An address keeps its IP while
// it exists, so each is read once per apply (a release forgets it): the
// members of a new cluster each read every member's address, and the
// compute API's rate limit is better spent elsewhere.
func (x *executor) addressIP(ctx context.Context, name string) (string, error) {
	x.mu.Lock()
	ip, ok := x.ips[name]
	x.mu.Unlock()
	if ok {
		return ip, nil
	}
	a, err := do(ctx, x.gce, "get address "+name, func() (*compute.Address, error) {
		return x.o.Compute.Addresses.Get(x.project(), x.region(), name).Context(ctx).Do()
	})
	if err != nil {
		return "", err
	}
	if a.Address != "" {
		x.mu.Lock()
		x.ips[name] = a.Address
		x.mu.Unlock()
	}
	return a.Address, nil
}

// forgetAddress drops an address's IP from what addressIP remembers.
func (x *executor) forgetAddress(name string) {
	x.mu.Lock()
	delete(x.ips, name)
	x.mu.Unlock()
}

func (x *executor) staticIP(ctx context.Context) (string, error) {
	return x.addressIP(ctx, spec.StaticIPName(x.cluster()))
}

func (x *executor) peerURL(ip string) string {
	return "https://" + ip + ":" + strconv.Itoa(x.o.Spec.Spec.Etcd.PeerPort)
}

func (x *executor) clientURL(ip string) string {
	return "https://" + ip + ":" + strconv.Itoa(x.o.Spec.Spec.Etcd.ClientPort)
}

// step carries out one step. A membership change first takes the lock and
// checks its preflight; etcd's refusals name the members as they are.
func (x *executor) step(ctx context.Context, s *planner.Step) error {
	if s.Action.Etcd() && s.Action != planner.FormCluster { // a new cluster's lock is taken once it formed
		if err := x.takeLock(ctx); err != nil {
			return err
		}
		if err := x.preflight(ctx, s); err != nil {
			return err
		}
	}
	return x.refusal(ctx, x.do(ctx, s))
}

// do dispatches a step to its handler.
func (x *executor) do(ctx context.Context, s *planner.Step) error {
	h, ok := handlers[s.Action]
	if !ok {
		return fmt.Errorf("unknown action %q: this kubeha is older than the plan", s.Action)
	}
	return h(x, ctx, s)
}

// retryInUse deletes a resource that may still be released by a deletion
// that just finished (GCE answers 400 resourceInUseByAnotherResource).
func (x *executor) retryInUse(ctx context.Context, what string, call func() (*compute.Operation, error)) error {
	deadline := time.Now().Add(x.o.Gate)
	for attempt := 0; ; attempt++ {
		err := x.gce.remove(ctx, what, call)
		if err == nil || httpCode(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "resourceInUse") || time.Now().After(deadline) {
			return err
		}
		if serr := sleep(ctx, backoff(attempt)); serr != nil {
			return err
		}
	}
}
