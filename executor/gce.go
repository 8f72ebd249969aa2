package executor

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"path"
	"strings"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/api/googleapi"

	compute "google.golang.org/api/compute/v1"

	"github.com/kubeha/kubeha/internal/gceretry"
	"github.com/kubeha/kubeha/planner"
)

// gce calls the Compute API with a client-side rate limit, retries and
// operation waits.
type gce struct {
	svc     *compute.Service
	project string
	limiter *rate.Limiter
}

// do runs an API call under the rate limit, retrying transient errors.
func do[T any](ctx context.Context, g *gce, what string, call func() (T, error)) (T, error) {
	return gceretry.Do(ctx, g.limiter, what, call)
}

func backoff(attempt int) time.Duration { return gceretry.Backoff(attempt) }

func sleep(ctx context.Context, d time.Duration) error { return gceretry.Sleep(ctx, d) }

// ErrNotFound and ErrExists are what an operation's HTTP status said.
var (
	errNotFound = errors.New("not found")
	errExists   = errors.New("already exists")
)

func httpCode(err error) int {
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		return ge.Code
	}
	return 0
}

// op runs a call that returns an operation and waits for it to be DONE,
// checking its error. A 409 on the call returns errExists and a 404
// errNotFound, for the caller to decide what they mean.
func (g *gce) op(ctx context.Context, what string, call func() (*compute.Operation, error)) error {
	o, err := do(ctx, g, what, call)
	switch {
	case httpCode(err) == http.StatusConflict:
		return fmt.Errorf("%s: %w", what, errExists)
	case httpCode(err) == http.StatusNotFound:
		return fmt.Errorf("%s: %w", what, errNotFound)
	case err != nil:
		return err
	}
	return g.wait(ctx, what, o)
}

// wait calls the operation's wait method until it is DONE (wait may return
// while it still RUNS), then checks the operation's error.
func (g *gce) wait(ctx context.Context, what string, o *compute.Operation) error {
	for o.Status != "DONE" {
		var err error
		o, err = do(ctx, g, what+": wait", func() (*compute.Operation, error) {
			switch {
			case o.Zone != "":
				return g.svc.ZoneOperations.Wait(g.project, path.Base(o.Zone), o.Name).Context(ctx).Do()
			case o.Region != "":
				return g.svc.RegionOperations.Wait(g.project, path.Base(o.Region), o.Name).Context(ctx).Do()
			}
			return g.svc.GlobalOperations.Wait(g.project, o.Name).Context(ctx).Do()
		})
		if err != nil {
			return err
		}
	}
	if o.Error != nil && len(o.Error.Errors) > 0 {
		e := o.Error.Errors[0]
		switch {
		case o.HttpErrorStatusCode == http.StatusConflict || e.Code == "RESOURCE_ALREADY_EXISTS":
			return fmt.Errorf("%s: %s: %w", what, e.Message, errExists)
		case o.HttpErrorStatusCode == http.StatusNotFound && strings.Contains(e.Message, o.TargetLink):
			return fmt.Errorf("%s: %s: %w", what, e.Message, errNotFound)
		}
		return fmt.Errorf("%s: operation %s failed: %s: %s", what, o.Name, e.Code, e.Message)
	}
	return nil
}

// create runs an insert. A resource that already exists (409) was made by
// an earlier apply, whose insert may still run: ready, when given, waits
// until it can be used (a disk READY, an address RESERVED), so that the
// next step does not meet a resource that is not ready.
func (g *gce) create(ctx context.Context, what string, call func() (*compute.Operation, error), ready func() error) error {
	err := g.op(ctx, what, call)
	if errors.Is(err, errExists) && ready != nil {
		return ready()
	}
	if errors.Is(err, errExists) {
		return nil
	}
	return err
}

// until polls get until it says the resource is ready, for at most gate.
func until(ctx context.Context, gate time.Duration, what string, get func() (ready bool, status string, err error)) error {
	deadline := time.Now().Add(gate)
	for attempt := 0; ; attempt++ {
		ok, status, err := get()
		if err != nil || ok {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: it exists but is still %s after %s", what, status, gate)
		}
		if err := sleep(ctx, min(backoff(attempt), 2*time.Second)); err != nil {
			return err
		}
	}
}

// remove runs a delete; a resource already gone is done.
func (g *gce) remove(ctx context.Context, what string, call func() (*compute.Operation, error)) error {
	err := g.op(ctx, what, call)
	if errors.Is(err, errNotFound) {
		return nil
	}
	return err
}

// requestID is the requestId of a step's insert: a UUID (version 4 form)
// derived from the apply and the step, the same for every retry of the
// call in this apply. GCE (and the emulator) return the first call's
// operation for a repeated requestId instead of creating twice after a
// timeout or a 5xx.
func (x *executor) requestID(s *planner.Step) string {
	sum := sha256.Sum256(append(x.runID[:], s.ID+" "+string(s.Action)+" "+s.Target...))
	b := sum[:16]
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
