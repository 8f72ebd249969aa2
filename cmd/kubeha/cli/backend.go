package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kubeha/kubeha/internal/gcpapi"
	"github.com/kubeha/kubeha/sim"
	"github.com/kubeha/kubeha/spec"
)

// backendOptions choose the Compute API kubeha talks to.
type backendOptions struct {
	endpoint string // --gce-endpoint or KUBEHA_GCE_ENDPOINT
	useSim   bool   // --sim
	simDir   string
	cmd      *cobra.Command // its error stream shows what the embedded emulator cannot do
}

// SimDir is where --sim keeps the embedded emulator's state.
const SimDir = ".kubeha/sim"

func (o *backendOptions) addFlags(cmd *cobra.Command) {
	o.cmd = cmd
	cmd.Flags().StringVar(&o.endpoint, "gce-endpoint", "", "Compute API endpoint, e.g. the URL `kubeha sim serve` prints (default $KUBEHA_GCE_ENDPOINT, else GCE with Application Default Credentials)")
	cmd.Flags().BoolVar(&o.useSim, "sim", false, "use the embedded emulator persisted in "+SimDir+" (no GCP account needed)")
	cmd.Flags().StringVar(&o.simDir, "sim-dir", SimDir, "state directory of the embedded emulator used with --sim")
}

// backend is the connected Google APIs: Google's or kubeha's emulator's.
type backend struct {
	*gcpapi.Clients
	sim  *sim.Server // non-nil with --sim
	kind string      // for messages: "GCE", "the emulator at URL", "the embedded emulator"
	// emulator is the base URL of kubeha's emulator when the backend may
	// be one (--sim, or an endpoint given): its admin API says what its
	// masters run.
	emulator string
}

// downloads are where the emulator's masters download their kubelet (the
// emulator serves its own build); none when the backend is not kubeha's
// emulator. The digests are fetched from there, as from a release.
func (b *backend) downloads(ctx context.Context) spec.Downloads {
	var r sim.Release
	if !b.emulatorGet(ctx, "/sim/v1/release", &r) {
		return spec.Downloads{}
	}
	return spec.Downloads{ReleaseURL: r.ReleaseURL}
}

// apiPort is the port a client reaches the API at on the static IP: 443,
// or where kubeha's emulator serves it when it may not bind 443 (an
// ordinary user).
func (b *backend) apiPort(ctx context.Context) int {
	var ports sim.Ports
	if !b.emulatorGet(ctx, "/sim/v1/ports", &ports) || ports["443"] == 0 {
		return 443
	}
	return ports["443"]
}

// emulatedControlPlane says what the emulator's masters run ("etcd only",
// "Kubernetes v1.37.2"), or "" when the backend is not kubeha's emulator
// or it has no master.
func (b *backend) emulatedControlPlane(ctx context.Context) string {
	var members []sim.MemberStatus
	if !b.emulatorGet(ctx, "/sim/v1/members", &members) {
		return ""
	}
	// Masters mid-upgrade run two releases: both are named.
	var runs []string
	for _, m := range members {
		if m.ControlPlane != "" && !slices.Contains(runs, m.ControlPlane) {
			runs = append(runs, m.ControlPlane)
		}
	}
	slices.Sort(runs)
	return strings.Join(runs, ", ")
}

// emulatorGet reads a document of kubeha's emulator admin API into v;
// false when the backend is not kubeha's emulator or it did not answer.
func (b *backend) emulatorGet(ctx context.Context, path string, v any) bool {
	if b.emulator == "" {
		return false
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.emulator+path, nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	return resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(v) == nil
}

func (b *backend) Close() error {
	if b.sim != nil {
		return b.sim.Close()
	}
	return nil
}

// normalizeEndpoint accepts an emulator URL with or without /compute/v1/.
func normalizeEndpoint(u string) string {
	u = strings.TrimRight(u, "/")
	u = strings.TrimSuffix(u, "/compute/v1")
	return u + "/compute/v1/"
}

func (o *backendOptions) connect(ctx context.Context) (*backend, error) {
	endpoint := o.endpoint
	if endpoint == "" {
		endpoint = os.Getenv("KUBEHA_GCE_ENDPOINT")
	}
	switch {
	case o.useSim && endpoint != "":
		return nil, errors.New("--sim and --gce-endpoint (or KUBEHA_GCE_ENDPOINT) both choose a backend: use one")
	case o.useSim:
		// Only the emulator's errors (a member that cannot start) are shown.
		var errOut io.Writer = io.Discard
		if o.cmd != nil {
			errOut = o.cmd.ErrOrStderr()
		}
		logger := slog.New(slog.NewTextHandler(errOut, &slog.HandlerOptions{Level: slog.LevelError}))
		bins, err := controlPlane(os.Getenv("KUBEHA_SIM_CONTROL_PLANE"))
		if err != nil {
			return nil, fmt.Errorf("KUBEHA_SIM_CONTROL_PLANE: %w", err)
		}
		srv, err := sim.Start(ctx, sim.Options{Dir: o.simDir, Subnet: os.Getenv("KUBEHA_SIM_SUBNET"), Profile: os.Getenv("KUBEHA_SIM_PROFILE"), Logger: logger, Kubernetes: bins})
		if err != nil {
			return nil, fmt.Errorf("start the embedded emulator in %s: %w", o.simDir, err)
		}
		c, err := gcpapi.Emulator(ctx, srv.URL())
		if err != nil {
			srv.Close()
			return nil, fmt.Errorf("connect to the embedded emulator: %w", err)
		}
		return &backend{Clients: c, sim: srv, kind: "the embedded emulator (" + o.simDir + ")", emulator: srv.URL()}, nil
	case endpoint != "":
		base := strings.TrimSuffix(normalizeEndpoint(endpoint), "/compute/v1/")
		c, err := gcpapi.Emulator(ctx, base)
		if err != nil {
			return nil, fmt.Errorf("connect to the Compute API at %s: %w", endpoint, err)
		}
		return &backend{Clients: c, kind: "the Compute API at " + endpoint, emulator: base}, nil
	default:
		c, err := gcpapi.Google(ctx)
		if err != nil {
			return nil, fmt.Errorf("connect to GCE with Application Default Credentials (run `gcloud auth application-default login`, or use --sim to try kubeha on the emulator): %w", err)
		}
		return &backend{Clients: c, kind: "GCE"}, nil
	}
}

// clusterOptions are what every command that reaches a cluster takes: its
// spec (-f) and the Compute API to talk to.
type clusterOptions struct {
	file    string
	backend backendOptions
}

func (o *clusterOptions) addFlags(cmd *cobra.Command, fileUsage string, optional bool) {
	addFileFlag(cmd, &o.file, fileUsage, optional)
	o.backend.addFlags(cmd)
}
