package cli

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubeha/kubeha/internal/atomicfile"
	"github.com/kubeha/kubeha/kubeapi"
	"github.com/kubeha/kubeha/metadata"
	"github.com/kubeha/kubeha/pki"
	"github.com/kubeha/kubeha/spec"
	"github.com/kubeha/kubeha/state"
)

type joinOptions struct {
	clusterOptions
	out          string
	ttl          time.Duration
	printKubeadm bool
}

func newJoinCommand(streams IOStreams) *cobra.Command {
	var o joinOptions
	cmd := newCommand("join", cobra.NoArgs, func(cmd *cobra.Command, _ []string) error { return runJoin(cmd, streams, o) })
	o.addFlags(cmd, "path of cluster.yaml", false)
	cmd.Flags().StringVar(&o.out, "out", "", "the bootstrap kubeconfig to write (mode 0600)")
	cmd.Flags().DurationVar(&o.ttl, "ttl", 24*time.Hour, "how long the token lets nodes join (0: until deleted)")
	cmd.Flags().BoolVar(&o.printKubeadm, "print-kubeadm", false, "also print the equivalent kubeadm join command (it holds the token)")
	return cmd
}

// apiAccess is the cluster's API at its static IP, as kubeha's admin.
type apiAccess struct {
	server string // https://STATIC_IP[:PORT]
	caPEM  string
	client *kubeapi.Client
}

// clusterAPI connects to the API at the static IP with the admin
// certificate of the PKI directory.
func clusterAPI(ctx context.Context, c *spec.Cluster, b *backend, obs *state.Cluster, file string) (*apiAccess, error) {
	if obs.StaticIP == nil || obs.StaticIP.Address == "" {
		return nil, fmt.Errorf("cluster %s has no static IP yet: run kubeha apply -f %s first", c.Metadata.Name, file)
	}
	p, err := pki.Ensure(c.PKIDir(), c.Metadata.Name)
	if err != nil {
		return nil, err
	}
	cert, key, err := p.Admin()
	if err != nil {
		return nil, err
	}
	server := "https://" + obs.StaticIP.Address
	if port := b.apiPort(ctx); port != 443 {
		server += ":" + strconv.Itoa(port) // kubeha's emulator, run by an ordinary user
	}
	cl, err := kubeapi.New(server, p.ClusterCA.CertPEM, cert, key)
	if err != nil {
		return nil, fmt.Errorf("the PKI in %s: %w", c.PKIDir(), err)
	}
	return &apiAccess{server: server, caPEM: p.ClusterCA.CertPEM, client: cl}, nil
}

// bootstrapKubeconfig creates a bootstrap token and returns the
// kubeconfig a node joins with.
func (a *apiAccess) bootstrapKubeconfig(ctx context.Context, cluster, purpose string, ttl time.Duration) (string, kubeapi.Token, error) {
	t, err := a.client.CreateBootstrapToken(ctx, metadata.BootstrapGroup, purpose, ttl, time.Now())
	if err != nil {
		return "", t, err
	}
	return kubeapi.BootstrapKubeconfig(cluster, a.server, a.caPEM, t), t, nil
}

func runJoin(cmd *cobra.Command, streams IOStreams, o joinOptions) error {
	if o.out == "" || o.out == "-" {
		return errors.New("--out FILE is required: the bootstrap kubeconfig holds a token that lets a machine join the cluster, so it is written only to a file you name")
	}
	if o.ttl < 0 {
		return fmt.Errorf("--ttl %s: give a positive duration such as 24h, or 0 for a token that lasts until deleted", o.ttl)
	}
	ctx := cmd.Context()
	c, b, obs, err := loadAndObserve(ctx, streams, o.file, &o.backend)
	if err != nil {
		return err
	}
	defer b.Close()
	api, err := clusterAPI(ctx, c, b, obs, o.file)
	if err != nil {
		return err
	}
	kubeconfig, token, err := api.bootstrapKubeconfig(ctx, c.Metadata.Name, "kubeha join: nodes of cluster "+c.Metadata.Name, o.ttl)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(o.out, []byte(kubeconfig), 0o600); err != nil {
		return fmt.Errorf("write the bootstrap kubeconfig: %w", err)
	}
	expires := "never expires (delete it with kubectl -n kube-system delete secret bootstrap-token-" + token.ID + ")"
	if !token.Expires.IsZero() {
		expires = "expires " + token.Expires.Format(time.RFC3339)
	}
	fmt.Fprintf(streams.Out, "Wrote the bootstrap kubeconfig of cluster %s (server %s, token %s, %s) to %s\n", c.Metadata.Name, api.server, token.ID, expires, o.out)
	fmt.Fprintf(streams.Out, "A kubelet joins with --bootstrap-kubeconfig=%s --kubeconfig=/var/lib/kubelet/kubeconfig --rotate-certificates\n", o.out)
	if o.printKubeadm {
		hash, err := kubeapi.CACertHash(api.caPEM)
		if err != nil {
			return err
		}
		host := strings.TrimPrefix(api.server, "https://")
		if !strings.Contains(host, ":") {
			host += ":443"
		}
		fmt.Fprintf(streams.Out, "kubeadm join %s --token %s --discovery-token-ca-cert-hash %s\n", host, token, hash)
	}
	return nil
}
