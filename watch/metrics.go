package watch

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the watcher's Prometheus metrics.
type Metrics struct {
	Reconciles   *prometheus.CounterVec
	Duration     *prometheus.HistogramVec
	LastSuccess  *prometheus.GaugeVec
	PendingSteps *prometheus.GaugeVec
	Voters       *prometheus.GaugeVec
	Healthy      *prometheus.GaugeVec
	Tolerance    *prometheus.GaugeVec
	Leader       *prometheus.GaugeVec
	InvalidSpecs *prometheus.CounterVec
}

// NewMetrics registers the watcher's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	l := []string{"cluster"}
	m := &Metrics{
		Reconciles:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kubeha_reconciles_total", Help: "Reconciles by result: noop, applied, failed, invalid, standby."}, []string{"cluster", "result"}),
		Duration:     prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "kubeha_reconcile_duration_seconds", Help: "Time of one reconcile.", Buckets: prometheus.ExponentialBuckets(0.05, 2, 14)}, l),
		LastSuccess:  prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kubeha_last_success_timestamp_seconds", Help: "When the cluster last matched its spec."}, l),
		PendingSteps: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kubeha_pending_plan_steps", Help: "Steps of the last plan not yet done."}, l),
		Voters:       prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kubeha_etcd_voters", Help: "etcd voters."}, l),
		Healthy:      prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kubeha_etcd_healthy_voters", Help: "Healthy etcd voters."}, l),
		Tolerance:    prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kubeha_etcd_fault_tolerance", Help: "Healthy voters minus quorum."}, l),
		Leader:       prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kubeha_watch_leader", Help: "1 when this watcher leads the cluster's reconciles."}, l),
		InvalidSpecs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kubeha_invalid_spec_total", Help: "Spec files that failed to load or validate."}, l),
	}
	reg.MustRegister(m.Reconciles, m.Duration, m.LastSuccess, m.PendingSteps, m.Voters, m.Healthy, m.Tolerance, m.Leader, m.InvalidSpecs)
	return m
}
