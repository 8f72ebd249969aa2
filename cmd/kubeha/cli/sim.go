package cli

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kubeha/kubeha/sim"
	"github.com/kubeha/kubeha/sim/kubelet"
	"github.com/kubeha/kubeha/spec"
)

type simServeOptions struct {
	listen       string
	dir          string
	profile      string
	timeScale    float64
	verbose      bool
	subnet       string
	controlPlane string
	mapLowPorts  bool
}

func newSimCommand(streams IOStreams) *cobra.Command {
	cmd := newCommand("sim", nil, nil)
	cmd.AddCommand(newSimServeCommand(streams), newSimNodesCommand(streams))
	return cmd
}

func newSimServeCommand(streams IOStreams) *cobra.Command {
	var o simServeOptions
	cmd := newCommand("sim-serve", cobra.NoArgs, func(cmd *cobra.Command, _ []string) error { return runSimServe(cmd, streams, o) })
	cmd.Flags().StringVar(&o.listen, "listen", "127.0.0.1:8080", "address to serve on")
	cmd.Flags().StringVar(&o.dir, "dir", ".kubeha/sim", "directory of the persisted state and disks")
	cmd.Flags().StringVar(&o.profile, "latency-profile", "fast", "operation latencies: "+strings.Join(sim.ProfileNames(), " or "))
	cmd.Flags().Float64Var(&o.timeScale, "time-scale", 1, "multiply every latency (0.05 runs the gce profile at 1/20 of real time)")
	cmd.Flags().StringVar(&o.subnet, "subnet", "", "loopback range of instance IPs for a new --dir (default "+sim.DefaultSubnet+"; kept in the state after)")
	cmd.Flags().BoolVarP(&o.verbose, "verbose", "v", false, "log the emulator's own events to standard error")
	cmd.Flags().BoolVar(&o.mapLowPorts, "map-low-ports", false, fmt.Sprintf("serve the API's 443 on %d, as the emulator does by itself when it may not bind ports below 1024", 443+sim.LowPortOffset))
	cmd.Flags().StringVar(&o.controlPlane, "control-plane", "auto", "what masters run: auto (the whole Kubernetes control plane when make kube-binaries has built it, else etcd only), kubernetes (it must be built), or etcd")
	return cmd
}

func runSimServe(cmd *cobra.Command, streams IOStreams, o simServeOptions) error {
	var logger *slog.Logger
	if o.verbose {
		logger = slog.New(slog.NewTextHandler(streams.ErrOut, nil))
	}
	bins, err := controlPlane(o.controlPlane)
	if err != nil {
		return err
	}
	srv, err := sim.Start(cmd.Context(), sim.Options{
		Listen: o.listen, Dir: o.dir, Profile: o.profile, TimeScale: o.timeScale, Logger: logger, Subnet: o.subnet, Kubernetes: bins,
		MapLowPorts: o.mapLowPorts,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(streams.Out, "sim: listening on %s\n", srv.URL())
	fmt.Fprintf(streams.Out, "sim: masters run %s\n", controlPlaneWords(bins))
	if port := srv.APIPort(); port != 443 {
		fmt.Fprintf(streams.Out, "sim: the API's port 443 is served on %d, at the masters and the static IPs (no permission to bind ports below 1024, or --map-low-ports)\n", port)
	}
	fmt.Fprintf(streams.Out, "sim: state in %s; export KUBEHA_GCE_ENDPOINT=%s\n", o.dir, srv.URL())
	<-cmd.Context().Done()
	fmt.Fprintln(streams.Out, "sim: stopping")
	if err := srv.Close(); err != nil {
		return fmt.Errorf("stop emulator: %w", err)
	}
	return nil
}

// controlPlane finds the binaries of the Kubernetes control plane for
// mode auto (nil when they are not built: etcd only), kubernetes (they
// must be built) or etcd (nil).
func controlPlane(mode string) (kubelet.Releases, error) {
	switch mode {
	case "etcd":
		return nil, nil
	case "auto", "kubernetes", "":
	default:
		return nil, fmt.Errorf("--control-plane %s: choose auto, kubernetes or etcd", mode)
	}
	wd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	var versions []string
	for _, r := range spec.Releases {
		versions = append(versions, r.Kubernetes)
	}
	bins, err := kubelet.FindReleases(wd, versions...)
	if errors.Is(err, kubelet.ErrNoBinaries) && mode != "kubernetes" {
		return nil, nil
	}
	return bins, err
}

func controlPlaneWords(rs kubelet.Releases) string {
	if rs == nil {
		return "etcd only (make kube-binaries builds the whole control plane)"
	}
	return rs.Words()
}
