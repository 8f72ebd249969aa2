package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/kubeha/kubeha/executor"
	"github.com/kubeha/kubeha/watch"
)

type watchOptions struct {
	clusterOptions
	resync    time.Duration
	debounce  time.Duration
	listen    string
	logFormat string
}

func newWatchCommand(streams IOStreams) *cobra.Command {
	var o watchOptions
	cmd := newCommand("watch", cobra.NoArgs, func(cmd *cobra.Command, _ []string) error { return runWatch(cmd.Context(), streams, o) })
	o.addFlags(cmd, "a cluster spec, or a directory of specs", false)
	cmd.Flags().DurationVar(&o.resync, "resync", 5*time.Minute, "reconcile every cluster this often even without a change")
	cmd.Flags().DurationVar(&o.debounce, "debounce", 300*time.Millisecond, "wait this long for a burst of file events to settle")
	cmd.Flags().StringVar(&o.listen, "listen", "", "serve /healthz, /readyz and /metrics here, e.g. 127.0.0.1:9090")
	cmd.Flags().StringVar(&o.logFormat, "log-format", "text", "text or json")
	return cmd
}

func runWatch(ctx context.Context, streams IOStreams, o watchOptions) error {
	var handler slog.Handler
	switch o.logFormat {
	case "text":
		handler = slog.NewTextHandler(streams.ErrOut, nil)
	case "json":
		handler = slog.NewJSONHandler(streams.ErrOut, nil)
	default:
		return fmt.Errorf("--log-format %s: choose text or json", o.logFormat)
	}
	log := slog.New(handler)
	if _, err := os.Stat(o.file); err != nil {
		return fmt.Errorf("watch %s: %w", o.file, err)
	}
	b, err := o.backend.connect(ctx)
	if err != nil {
		return err
	}
	defer b.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := watch.NewMetrics(reg)
	var ready atomic.Bool
	if o.listen != "" {
		ln, err := net.Listen("tcp", o.listen)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", o.listen, err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
		mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
			if !ready.Load() {
				http.Error(w, "starting", http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, "ok")
		})
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics server", "err", err)
			}
		}()
		defer srv.Close()
		log.Info("serving health and metrics", "addr", ln.Addr().String())
	}
	who := "kubeha-watch"
	if u, err := user.Current(); err == nil {
		who = u.Username + " (watch)"
	}
	host, _ := os.Hostname()
	ready.Store(true)
	return watch.Run(ctx, watch.Options{
		Compute: b.Compute, Path: o.file, Resync: o.resync, Debounce: o.debounce, Logger: log, Metrics: metrics,
		Who:   executor.Holder{Who: who, Host: host, PID: os.Getpid(), Since: time.Now().UTC()},
		Apply: executor.Options{Downloads: b.downloads(ctx), APIPort: b.apiPort(ctx), IAM: b.IAM, Secrets: b.Secrets, SecretManagerURL: b.SecretManagerURL, Storage: b.Storage, StorageURL: b.StorageURL},
	})
}
