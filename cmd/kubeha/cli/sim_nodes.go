package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubeha/kubeha/sim"
	"github.com/kubeha/kubeha/spec"
	"github.com/kubeha/kubeha/state"
)

type simNodesOptions struct {
	clusterOptions
	count int
}

func newSimNodesCommand(streams IOStreams) *cobra.Command {
	var o simNodesOptions
	cmd := newCommand("sim-nodes", cobra.NoArgs, func(cmd *cobra.Command, _ []string) error { return runSimNodes(cmd, streams, o) })
	o.addFlags(cmd, "path of cluster.yaml", false)
	cmd.Flags().IntVar(&o.count, "count", -1, "how many hollow nodes the cluster should have (0 stops them all); without it, list them")
	return cmd
}

func runSimNodes(cmd *cobra.Command, streams IOStreams, o simNodesOptions) error {
	ctx := cmd.Context()
	c, b, obs, err := loadAndObserve(ctx, streams, o.file, &o.backend)
	if err != nil {
		return err
	}
	defer b.Close()
	if b.emulator == "" {
		return errors.New("hollow nodes run in kubeha's emulator only: use --sim or --gce-endpoint; on GCE, nodes join with kubeha join")
	}
	if b.sim != nil && o.count > 0 {
		return errors.New("hollow nodes run as long as their emulator, and --sim's ends with this command: run kubeha sim serve and point kubeha at it with --gce-endpoint URL (or KUBEHA_GCE_ENDPOINT)")
	}
	var st sim.NodesStatus
	if !b.emulatorGet(ctx, "/sim/v1/nodes", &st) {
		return fmt.Errorf("%s does not list hollow nodes: is it kubeha's emulator?", b.kind)
	}
	if o.count >= 0 {
		// New nodes run the kubelet of the oldest Kubernetes the masters
		// run: the version skew policy lets a kubelet be older than the
		// API servers, never newer.
		req := sim.NodesRequest{Cluster: c.Metadata.Name, Count: o.count, Version: oldestVersion(obs)}
		api, err := clusterAPI(ctx, c, b, obs, o.file)
		if err != nil {
			return err
		}
		var gone []string
		have := 0
		for _, n := range st.Nodes {
			if n.Cluster == c.Metadata.Name {
				have++
				if have > o.count {
					gone = append(gone, n.Name)
				}
			}
		}
		if o.count > have {
			// The token lets the new nodes join; it expires in a day, and
			// a node that joined keeps renewing its own certificate.
			if req.BootstrapKubeconfig, _, err = api.bootstrapKubeconfig(ctx, c.Metadata.Name, "kubeha sim nodes: hollow nodes of cluster "+c.Metadata.Name, 24*time.Hour); err != nil {
				return err
			}
		}
		if st, err = b.scaleNodes(ctx, req); err != nil {
			return err
		}
		// A node that is stopped for good leaves the cluster, as a managed
		// instance group's scale-down does with the cloud's node controller.
		for _, name := range gone {
			if err := api.client.DeleteNode(ctx, name); err != nil {
				return err
			}
		}
	}
	return printNodes(streams.Out, c.Metadata.Name, st)
}

func (b *backend) scaleNodes(ctx context.Context, req sim.NodesRequest) (sim.NodesStatus, error) {
	var st sim.NodesStatus
	body, _ := json.Marshal(req)
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, b.emulator+"/sim/v1/nodes", bytes.NewReader(body))
	if err != nil {
		return st, err
	}
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		return st, fmt.Errorf("ask %s for hollow nodes: %w", b.kind, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return st, fmt.Errorf("%s refused the hollow nodes: %s", b.kind, bytes.TrimSpace(msg))
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

func printNodes(out io.Writer, cluster string, st sim.NodesStatus) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tVERSION\tSTATE\tRESTARTS\tMEMORY")
	n := 0
	for _, node := range st.Nodes {
		if node.Cluster != cluster {
			continue
		}
		n++
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d MiB\n", node.Name, node.Version, node.State, node.Restarts, node.RSSBytes>>20)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "%d hollow nodes of cluster %s (kubemark: the kubelet's code with a fake container runtime)\n", n, cluster)
	if st.HostnameIsolation == "" {
		fmt.Fprintln(out, "note: no UTS namespace can be made here, so every hollow node's processes report this host's name")
	}
	return nil
}

// oldestVersion is the oldest Kubernetes version a master of the cluster
// runs, or "" when none says.
func oldestVersion(obs *state.Cluster) string {
	oldest := ""
	for _, in := range obs.Instances {
		if in.Config == nil || in.Config.KubernetesVersion == "" {
			continue
		}
		if v := in.Config.KubernetesVersion; oldest == "" || spec.CompareVersions(v, oldest) < 0 {
			oldest = v
		}
	}
	return oldest
}
