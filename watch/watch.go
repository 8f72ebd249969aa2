package watch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"

	compute "google.golang.org/api/compute/v1"

	"github.com/kubeha/kubeha/executor"
	"github.com/kubeha/kubeha/kubeapi"
	"github.com/kubeha/kubeha/pki"
	"github.com/kubeha/kubeha/planner"
	"github.com/kubeha/kubeha/spec"
	"github.com/kubeha/kubeha/state"
	"github.com/kubeha/kubeha/state/observe"
)

// Options configure Run.
type Options struct {
	Compute *compute.Service
	// Path is a cluster spec file, or a directory whose every *.yaml is one.
	Path string
	// Resync is how often each cluster is reconciled without a change of its
	// file (jittered by ±10%); default 5 minutes.
	Resync time.Duration
	// Debounce waits for a burst of file events to settle; default 300ms.
	Debounce time.Duration
	Logger   *slog.Logger
	Metrics  *Metrics
	Who      executor.Holder
	// Apply tunes each apply (Compute, Spec, Observed, PKI and Hooks are set
	// by the watcher).
	Apply executor.Options
}

// Run reconciles every cluster spec at Path until ctx is cancelled: on
// every saved change of a file (renames and symlink swaps included, as
// editors and ConfigMaps do), and every Resync. It returns once the applies
// in flight have stopped at a safe point and leadership is released.
func Run(ctx context.Context, o Options) error {
	if o.Resync <= 0 {
		o.Resync = 5 * time.Minute
	}
	if o.Debounce <= 0 {
		o.Debounce = 300 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(prometheus.NewRegistry())
	}
	fi, err := os.Stat(o.Path)
	if err != nil {
		return fmt.Errorf("watch %s: %w", o.Path, err)
	}
	dir, only := o.Path, ""
	if !fi.IsDir() {
		dir, only = filepath.Dir(o.Path), filepath.Base(o.Path)
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch %s: %w", dir, err)
	}
	defer fw.Close()
	if err := fw.Add(dir); err != nil {
		return fmt.Errorf("watch %s: %w", dir, err)
	}
	loops := map[string]*clusterLoop{}
	pkiOwners := &pkiOwners{byDir: map[string]string{}}
	addons := &addonDirs{fw: fw, specs: map[string]map[string]bool{}}
	var wg sync.WaitGroup
	ensure := func(name string) {
		if _, ok := loops[name]; ok {
			return
		}
		l := &clusterLoop{o: o, path: filepath.Join(dir, name), kick: make(chan struct{}, 1), log: o.Logger.With("spec", filepath.Join(dir, name)), pkis: pkiOwners,
			addons: addons, name: name}
		loops[name] = l
		wg.Add(1)
		go func() { defer wg.Done(); l.run(ctx) }()
	}
	wanted := func(name string) bool {
		if only != "" {
			return name == only
		}
		return (strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")) && !strings.HasPrefix(name, ".")
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("watch %s: %w", dir, err)
	}
	for _, e := range entries {
		if wanted(e.Name()) {
			ensure(e.Name())
		}
	}
	if only != "" {
		ensure(only)
	}
	o.Logger.Info("watching", "path", o.Path, "clusters", len(loops), "resync", o.Resync)
	timers := map[string]*time.Timer{}
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			o.Logger.Info("stopped")
			return nil
		case err := <-fw.Errors:
			o.Logger.Error("file watch", "err", err)
		case ev := <-fw.Events:
			for _, n := range addons.specsOf(filepath.Dir(ev.Name)) {
				kickAfter(timers, n, o.Debounce, loops[n])
			}
			name := filepath.Base(ev.Name)
			// A ConfigMap swaps a ..data symlink: every spec may have changed.
			if strings.HasPrefix(name, "..") {
				for n := range loops {
					kickAfter(timers, n, o.Debounce, loops[n])
				}
				continue
			}
			if !wanted(name) {
				continue
			}
			ensure(name)
			kickAfter(timers, name, o.Debounce, loops[name])
		}
	}
}

func kickAfter(timers map[string]*time.Timer, name string, d time.Duration, l *clusterLoop) {
	if t, ok := timers[name]; ok {
		t.Stop()
	}
	timers[name] = time.AfterFunc(d, l.trigger)
}

// clusterLoop reconciles one spec file.
type clusterLoop struct {
	o    Options
	path string
	kick chan struct{}
	log  *slog.Logger

	good     *spec.Cluster // the last spec that loaded and validated
	failures int
	lead     *leadership
	pkis     *pkiOwners
	addons   *addonDirs
	name     string // the spec file's name in the watched directory
}

// pkiOwners remembers which cluster uses which PKI directory: clusters must
// not share CAs (a member of one would be trusted by the other's etcd).
type pkiOwners struct {
	mu    sync.Mutex
	byDir map[string]string
}

func (p *pkiOwners) claim(dir, cluster string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = dir
	}
	if owner, ok := p.byDir[abs]; ok && owner != cluster {
		return fmt.Errorf("its PKI directory %s belongs to cluster %s: clusters must not share CAs; give each spec its own spec.pki.dir", dir, owner)
	}
	p.byDir[abs] = cluster
	return nil
}

func (l *clusterLoop) trigger() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

func (l *clusterLoop) run(ctx context.Context) {
	defer func() {
		if l.lead != nil {
			l.lead.release()
		}
	}()
	l.trigger()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.kick:
		case <-timer.C:
		}
		err := l.reconcile(ctx)
		wait := jitter(l.o.Resync)
		if err != nil {
			l.failures++
			wait = min(wait, time.Duration(1<<min(l.failures, 8))*5*time.Second)
		} else {
			l.failures = 0
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
	}
}

func jitter(d time.Duration) time.Duration {
	return d + time.Duration((rand.Float64()*0.2-0.1)*float64(d))
}

// reconcile validates, plans and applies once.
func (l *clusterLoop) reconcile(ctx context.Context) error {
	start := time.Now()
	c, _, err := spec.Load(l.path)
	if err != nil {
		name := "unknown"
		if l.good != nil {
			name = l.good.Metadata.Name
		}
		if errors.Is(err, os.ErrNotExist) || strings.Contains(err.Error(), "no such file") {
			l.log.Info("spec file is gone: its cluster is left as it is")
			return nil
		}
		l.o.Metrics.InvalidSpecs.WithLabelValues(name).Inc()
		l.o.Metrics.Reconciles.WithLabelValues(name, "invalid").Inc()
		l.log.Error("spec is invalid: nothing is changed, the last good spec stays in force", "err", err)
		if l.good == nil {
			return err
		}
		return nil
	}
	if err := l.pkis.claim(c.PKIDir(), c.Metadata.Name); err != nil {
		l.o.Metrics.InvalidSpecs.WithLabelValues(c.Metadata.Name).Inc()
		l.o.Metrics.Reconciles.WithLabelValues(c.Metadata.Name, "invalid").Inc()
		l.log.Error("spec is refused: nothing is changed", "cluster", c.Metadata.Name, "err", err)
		return nil
	}
	l.good = c
	if err := l.addons.watch(c.AddonsDir(), l.name); err != nil {
		l.log.Warn("spec.addons.dir is not watched: its changes are applied at the next resync", "dir", c.AddonsDir(), "err", err)
	}
	name := c.Metadata.Name
	m := l.o.Metrics
	defer func() { m.Duration.WithLabelValues(name).Observe(time.Since(start).Seconds()) }()
	result, err := l.apply(ctx, c)
	m.Reconciles.WithLabelValues(name, result).Inc()
	if err != nil {
		l.log.Error("reconcile failed", "cluster", name, "err", err)
		return err
	}
	if result == "noop" || result == "applied" {
		m.LastSuccess.WithLabelValues(name).SetToCurrentTime()
	}
	return nil
}

func (l *clusterLoop) apply(ctx context.Context, c *spec.Cluster) (string, error) {
	name, m := c.Metadata.Name, l.o.Metrics
	p, err := pki.Ensure(c.PKIDir(), name)
	if err != nil {
		return "failed", err
	}
	tlsCfg, err := p.ClientTLS()
	if err != nil {
		return "failed", err
	}
	obs, record, err := observe.WithHealth(ctx, observe.Source{Compute: l.o.Compute, IAM: l.o.Apply.IAM, Secrets: l.o.Apply.Secrets, EtcdTLS: tlsCfg, PKIDir: c.PKIDir(),
		Kube: kubeapi.Admin(c.PKIDir(), name, l.o.Apply.APIPort)}, c)
	if err != nil {
		return "failed", err
	}
	if err := record(); err != nil {
		return "failed", err
	}
	ms := obs.Membership()
	m.Voters.WithLabelValues(name).Set(float64(ms.Voters))
	m.Healthy.WithLabelValues(name).Set(float64(ms.HealthyVoters))
	m.Tolerance.WithLabelValues(name).Set(float64(ms.FaultTolerance))
	// Only the elected watcher acts; before the cluster has an etcd, the
	// apply's lock file decides (see the README).
	if obs.Etcd.Reachable {
		if l.lead == nil {
			l.lead = newLeadership(name, tlsCfg, l.o.Who, l.log)
		}
		if !l.lead.leads(ctx, obs) {
			m.Leader.WithLabelValues(name).Set(0)
			return "standby", nil
		}
		m.Leader.WithLabelValues(name).Set(1)
	}
	addons, err := executor.AddonsDigest(c)
	if err != nil {
		return "failed", err
	}
	plan, err := planner.ComputeWith(c, obs, planner.Options{Addons: addons})
	if err != nil {
		return "failed", err
	}
	m.PendingSteps.WithLabelValues(name).Set(float64(len(plan.Steps)))
	if plan.NoChanges {
		return "noop", nil
	}
	l.log.Info("applying", "cluster", name, "steps", len(plan.Steps), "create", plan.Summary.Create, "update", plan.Summary.Update, "delete", plan.Summary.Delete)
	o := l.o.Apply
	if o.Downloads, err = executor.ResolveDownloads(ctx, plan, c, obs, o.Downloads, nil); err != nil {
		return "failed", err
	}
	o.Compute, o.Spec, o.Observed, o.PKI, o.Who = l.o.Compute, c, obs, p, l.o.Who
	o.BackupDir = c.BackupDir()
	hooks := &logHooks{log: l.log, pending: m.PendingSteps.WithLabelValues(name), total: len(plan.Steps)}
	o.Hooks = hooks
	if err := executor.Apply(ctx, plan, o); err != nil {
		return "failed", err
	}
	m.PendingSteps.WithLabelValues(name).Set(0)
	after := plan.After
	if hooks.measured != nil {
		after = *hooks.measured // what the last step left, measured
	}
	m.Voters.WithLabelValues(name).Set(float64(after.Voters))
	m.Healthy.WithLabelValues(name).Set(float64(after.HealthyVoters))
	m.Tolerance.WithLabelValues(name).Set(float64(after.FaultTolerance))
	l.log.Info("applied", "cluster", name, "etcd_voters", after.Voters, "etcd_healthy_voters", after.HealthyVoters, "fault_tolerance", after.FaultTolerance)
	return "applied", nil
}

type logHooks struct {
	mu      sync.Mutex
	log     *slog.Logger
	pending prometheus.Gauge
	total   int
	done    int
	// measured is the membership measured after the last finished step.
	measured *state.Membership
}

func (h *logHooks) StepStarted(e executor.Event) {}

// StepWaiting logs what a step waits for, each time that changes.
func (h *logHooks) StepWaiting(e executor.Event) {
	h.log.Info("step waiting", "step", e.Label(), "waiting", e.Waiting)
}

func (h *logHooks) StepFinished(e executor.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if e.Err != nil {
		h.log.Error("step failed", "step", e.Label(), "action", e.Step.Action, "target", e.Step.Target, "err", e.Err)
		return
	}
	h.done++
	h.pending.Set(float64(h.total - h.done))
	args := []any{"step", e.Label(), "action", e.Step.Action, "target", e.Step.Target, "elapsed", e.Elapsed.Round(time.Millisecond)}
	if e.Etcd != nil {
		h.measured = e.Etcd
		args = append(args, "etcd_healthy_voters", e.Etcd.HealthyVoters, "fault_tolerance", e.Etcd.FaultTolerance)
	}
	h.log.Info("step done", args...)
}
