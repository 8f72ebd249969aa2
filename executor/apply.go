package executor

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"golang.org/x/time/rate"

	compute "google.golang.org/api/compute/v1"
	iam "google.golang.org/api/iam/v1"
	secretmanager "google.golang.org/api/secretmanager/v1"
	storage "google.golang.org/api/storage/v1"

	"github.com/kubeha/kubeha/pki"
	"github.com/kubeha/kubeha/planner"
	"github.com/kubeha/kubeha/spec"
	"github.com/kubeha/kubeha/state"
)

// Options configure Apply.
type Options struct {
	Compute  *compute.Service
	Spec     *spec.Cluster
	Observed *state.Cluster // what the plan was computed against
	PKI      *pki.PKI
	// Parallelism bounds the steps that run at once; default
	// DefaultParallelism.
	Parallelism int
	// RateLimit is the most compute API requests per second; default 20.
	RateLimit float64
	// Gate bounds each health gate and each retried membership change;
	// default 5 minutes.
	Gate time.Duration
	// EtcdTimeout bounds one etcd call; default 5s.
	EtcdTimeout time.Duration
	// BackupDir receives etcd snapshots; Keep is how many are kept (default 10).
	BackupDir string
	Keep      int
	// LockWait is how long to wait for another apply's lock; 0 fails at once.
	LockWait time.Duration
	Who      Holder
	Hooks    Hooks
	// Downloads are where masters download their kubelet, when the spec
	// does not say (kubeha's emulator serves its own).
	Downloads spec.Downloads
	// IAM manages the masters' service account; Secrets holds their private
	// keys, which the masters read from SecretManagerURL (default
	// Secret Manager's).
	IAM              *iam.Service
	Secrets          *secretmanager.Service
	SecretManagerURL string
	// Storage is the Cloud Storage a restore's snapshot goes through, which
	// the masters read at StorageURL (default https://storage.googleapis.com).
	Storage    *storage.Service
	StorageURL string
	// APIPort is where the API is served at the static IP: 443 (0), or
	// where kubeha's emulator serves it for an ordinary user.
	APIPort int

	// twice runs every step's handler a second time once it succeeded (the
	// step's preflight, which checks the membership the step starts from,
	// is not run again): the test of every handler's idempotency.
	twice bool
}

// DefaultParallelism is how many steps run at once by default: enough for
// every independent step of a new cluster of 5 masters (its firewalls,
// static IP, load balancer, addresses, disks and instances) to start at
// once, as GCE runs operations on independent resources at once. The
// compute API rate (RateLimit) bounds the calls, not this.
const DefaultParallelism = 16

// Event is a step starting, waiting or finishing.
type Event struct {
	Step    *planner.Step
	Index   int // 1-based position in the plan
	Total   int
	Elapsed time.Duration // for a finished step
	Err     error
	// Waiting says what a running step waits for (each member's state),
	// for StepWaiting; it changes as the members do.
	Waiting string
	// Etcd is the membership measured right after a finished step (nil
	// when the cluster has no etcd yet or it could not be asked).
	Etcd *state.Membership
}

// Label names a step the way progress and errors both do:
// "[5/16] remove-etcd-member prod-master-abc".
func (e Event) Label() string {
	return fmt.Sprintf("[%*d/%d] %s %s", len(fmt.Sprint(e.Total)), e.Index, e.Total, e.Step.Action, e.Step.Target)
}

// Hooks receive progress; the executor prints nothing itself. They are
// called from the goroutines that run steps, so at the same time.
type Hooks interface {
	StepStarted(Event)
	// StepWaiting says what a running step waits for, each time that
	// changes (a health gate: the members' states), or what it did on its
	// way (the snapshot it saved).
	StepWaiting(Event)
	StepFinished(Event)
}

// NoHooks ignores progress.
type NoHooks struct{}

// StepStarted does nothing.
func (NoHooks) StepStarted(Event) {}

// StepWaiting does nothing.
func (NoHooks) StepWaiting(Event) {}

// StepFinished does nothing.
func (NoHooks) StepFinished(Event) {}

// ErrInterrupted says Apply stopped early at a safe point; the next apply
// plans again from where it stopped.
var ErrInterrupted = errors.New("interrupted")

type executor struct {
	o    Options
	plan *planner.Plan
	gce  *gce
	etcd *etcd

	mu       sync.Mutex
	zones    map[string]string // instance -> zone
	learners map[string]uint64 // replica -> learner ID added by this apply
	ips      map[string]string // address name -> IP, as read (addressIP)
	lock     *lock
	fileLock *os.File
	index    map[*planner.Step]int // 1-based position of each step
	// assumed is, for each membership change, the membership the plan
	// leaves before it: what its preflight checks.
	assumed map[*planner.Step]state.Membership
	// lastSnap is the etcd revision of the last snapshot this apply saved
	// (0: none yet).
	lastSnap     int64
	lastSnapFile string
	// runID identifies this apply: the requestIds of its calls derive from
	// it, so a call retried in this apply repeats its requestId and a later
	// apply's calls have their own.
	runID [16]byte
}

// Apply carries out a plan. Steps run as soon as their dependencies are
// done, at most Parallelism at once; membership changes are chained by the
// plan and each waits for its health gate. On the first failure, or when
// ctx is cancelled, no new step starts; the steps running finish (a step is
// never abandoned halfway), and Apply returns the failure or ErrInterrupted.
// Waits (health gates, GCE operations) end within Grace of a cancellation.
func Apply(ctx context.Context, p *planner.Plan, o Options) (err error) {
	x, err := newExecutor(p, o)
	if err != nil {
		return err
	}
	defer x.etcd.close()
	if err := x.lockFile(); err != nil {
		return err
	}
	defer x.unlockFile()
	var eps []string
	for _, m := range o.Observed.Etcd.Members {
		if !m.IsLearner { // a learner refuses most RPCs
			eps = append(eps, m.ClientURLs...)
		}
	}
	// A restore of an etcd without quorum has no lock to take: it takes
	// the restored cluster's once it formed. Two restores on this machine
	// are kept apart by the file lock.
	if ms := o.Observed.Membership(); restores(p) && ms.HealthyVoters < ms.Quorum {
		eps = nil
	}
	if len(eps) > 0 {
		if _, err := x.etcd.client(eps); err != nil {
			return err
		}
		if err := x.takeLock(ctx); err != nil {
			return err
		}
	}
	defer func() {
		switch {
		case x.lock == nil:
		case err == nil && p.After.Voters == 0:
			x.lock.abandon() // a destroy: the lock went with the etcd that held it
		default:
			x.lock.release()
		}
	}()
	return x.run(ctx)
}

// restores says the plan restores etcd from a snapshot.
func restores(p *planner.Plan) bool {
	return slices.ContainsFunc(p.Steps, func(s *planner.Step) bool { return s.Action == planner.UploadSnapshot })
}

// newExecutor sets o's defaults and indexes the plan.
func newExecutor(p *planner.Plan, o Options) (*executor, error) {
	if o.Parallelism <= 0 {
		o.Parallelism = DefaultParallelism
	}
	if o.RateLimit <= 0 {
		o.RateLimit = 20
	}
	if o.Gate <= 0 {
		o.Gate = 5 * time.Minute
	}
	if o.EtcdTimeout <= 0 {
		o.EtcdTimeout = 5 * time.Second
	}
	if o.Keep <= 0 {
		o.Keep = 10
	}
	if o.Hooks == nil {
		o.Hooks = NoHooks{}
	}
	if o.PKI == nil {
		return nil, errors.New("apply: no PKI")
	}
	if err := CheckDownloads(p, o.Spec, o.Observed, o.Downloads); err != nil {
		return nil, err
	}
	clientTLS, err := o.PKI.ClientTLS()
	if err != nil {
		return nil, err
	}
	x := &executor{o: o, plan: p,
		gce:      &gce{svc: o.Compute, project: o.Spec.Spec.GCE.Project, limiter: rate.NewLimiter(rate.Limit(o.RateLimit), int(o.RateLimit))},
		etcd:     &etcd{tls: clientTLS, timeout: o.EtcdTimeout, gate: o.Gate},
		zones:    map[string]string{},
		learners: map[string]uint64{},
		ips:      map[string]string{},
	}
	if _, err := rand.Read(x.runID[:]); err != nil {
		return nil, fmt.Errorf("apply: %w", err)
	}
	for _, in := range o.Observed.Instances {
		x.zones[in.Name] = in.Zone
	}
	x.index, x.assumed = map[*planner.Step]int{}, map[*planner.Step]state.Membership{}
	before := o.Observed.Membership()
	for i, s := range p.Steps {
		x.index[s] = i + 1
		if s.Action.Etcd() {
			x.assumed[s] = before
		}
		before = s.Etcd
		if s.Instance != nil {
			x.zones[s.Instance.Name] = s.Instance.Zone
		}
	}
	return x, nil
}

// lockFile protects the cluster against two applies on this machine even
// before its etcd exists (the etcd lock covers every machine once it does).
func (x *executor) lockFile() error {
	path := filepath.Join(x.o.PKI.Dir, "apply-"+x.o.Spec.Metadata.Name+".lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("open apply lock %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return fmt.Errorf("%w: another kubeha apply or watch on this machine is changing cluster %s (it holds %s): wait for it", ErrLocked, x.o.Spec.Metadata.Name, path)
	}
	x.fileLock = f
	return nil
}

func (x *executor) unlockFile() {
	if x.fileLock != nil {
		syscall.Flock(int(x.fileLock.Fd()), syscall.LOCK_UN)
		x.fileLock.Close()
	}
}

func (x *executor) takeLock(ctx context.Context) error {
	if x.lock != nil {
		return nil
	}
	l, err := x.etcd.acquire(ctx, x.o.Spec.Metadata.Name, x.o.Who, x.o.LockWait)
	if err != nil {
		return err
	}
	x.lock = l
	return nil
}

type result struct {
	step *planner.Step
	err  error
}

// Grace is how long the steps in flight get to finish after Apply's
// context is cancelled, before their waits (health gates, GCE operations,
// retries) are cut short too. A step cut short leaves the cluster as a
// kill would at that point, from which the next apply converges; most
// steps finish within it.
const Grace = 2 * time.Second

// event is the event of step s.
func (x *executor) event(s *planner.Step) Event {
	return Event{Step: s, Index: x.index[s], Total: len(x.plan.Steps)}
}

// failed names a failed step as progress does.
func (x *executor) failed(s *planner.Step, err error) error {
	return fmt.Errorf("step %s: %w", x.event(s).Label(), err)
}

func (x *executor) run(ctx context.Context) error {
	steps := x.plan.Steps
	index := map[string]int{}
	for i, s := range steps {
		index[s.ID] = i
	}
	done := make([]bool, len(steps))
	started := make([]bool, len(steps))
	results := make(chan result)
	running := 0
	var failure, cut error
	// Steps go on for Grace after ctx is cancelled: the cancellation stops
	// new steps at once, and the waits of those running a little later.
	stepCtx, cancelSteps := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSteps()
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(Grace, cancelSteps) })
	defer stop()
	var reporting sync.WaitGroup
	defer reporting.Wait()
	for {
		if failure == nil && ctx.Err() == nil {
			for i, s := range steps {
				if started[i] || running >= x.o.Parallelism {
					continue
				}
				ready := true
				for _, d := range s.DependsOn {
					ready = ready && done[index[d]]
				}
				if !ready {
					continue
				}
				started[i] = true
				running++
				go func(s *planner.Step) {
					ev := x.event(s)
					x.o.Hooks.StepStarted(ev)
					t0 := time.Now()
					err := x.step(stepCtx, s)
					if err == nil && x.o.twice {
						if err = x.refusal(stepCtx, x.do(stepCtx, s)); err != nil {
							err = fmt.Errorf("run again: %w", err)
						}
					}
					ev.Elapsed, ev.Err = time.Since(t0), err
					// The step is done: its dependents may start while
					// the membership it left is measured for its report.
					reporting.Add(1)
					results <- result{s, err}
					go func() {
						defer reporting.Done()
						if err == nil {
							ev.Etcd = x.measure(stepCtx)
						}
						x.o.Hooks.StepFinished(ev)
					}()
				}(s)
			}
		}
		if running == 0 {
			break
		}
		r := <-results
		running--
		switch {
		case r.err == nil:
			done[index[r.step.ID]] = true
		case ctx.Err() != nil && errors.Is(r.err, context.Canceled):
			if cut == nil {
				cut = x.failed(r.step, r.err)
			}
		case failure == nil:
			failure = x.failed(r.step, r.err)
		}
	}
	if failure != nil {
		return failure
	}
	for i := range steps {
		if !done[i] {
			msg := fmt.Sprintf("%%w after %d of %d steps: the cluster is in a safe state; run apply again to finish", countTrue(done), len(steps))
			if cut != nil {
				return fmt.Errorf(msg+" (stopped waiting: %v)", ErrInterrupted, cut)
			}
			return fmt.Errorf(msg, ErrInterrupted)
		}
	}
	return nil
}

func countTrue(b []bool) int {
	n := 0
	for _, v := range b {
		if v {
			n++
		}
	}
	return n
}
