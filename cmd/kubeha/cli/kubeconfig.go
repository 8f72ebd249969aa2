package cli

import (
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kubeha/kubeha/internal/atomicfile"
	"github.com/kubeha/kubeha/pki"
)

type kubeconfigOptions struct {
	clusterOptions
	out string
}

func newKubeconfigCommand(streams IOStreams) *cobra.Command {
	var o kubeconfigOptions
	cmd := newCommand("kubeconfig", cobra.NoArgs, func(cmd *cobra.Command, _ []string) error { return runKubeconfig(cmd, streams, o) })
	o.addFlags(cmd, "path of cluster.yaml", false)
	cmd.Flags().StringVar(&o.out, "out", "", "the file to write (mode 0600)")
	return cmd
}

func runKubeconfig(cmd *cobra.Command, streams IOStreams, o kubeconfigOptions) error {
	if o.out == "" || o.out == "-" {
		return errors.New("--out FILE is required: the kubeconfig holds a private key, so it is written only to a file you name, never to standard output")
	}
	c, b, obs, err := loadAndObserve(cmd.Context(), streams, o.file, &o.backend)
	if err != nil {
		return err
	}
	defer b.Close()
	api, err := clusterAPI(cmd.Context(), c, b, obs, o.file)
	if err != nil {
		return err
	}
	p, err := pki.Ensure(c.PKIDir(), c.Metadata.Name)
	if err != nil {
		return err
	}
	cert, key, err := p.Admin()
	if err != nil {
		return err
	}
	if err := atomicfile.Write(o.out, []byte(adminKubeconfig(c.Metadata.Name, api.server, api.caPEM, cert, key)), 0o600); err != nil {
		return fmt.Errorf("write the kubeconfig: %w", err)
	}
	fmt.Fprintf(streams.Out, "Wrote the admin kubeconfig of cluster %s (server %s) to %s\n", c.Metadata.Name, api.server, o.out)
	return nil
}

// adminKubeconfig is a kubeconfig with its credentials inline.
func adminKubeconfig(cluster, server, caPEM, certPEM, keyPEM string) string {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: %[1]s
  cluster:
    server: %[2]s
    certificate-authority-data: %[3]s
users:
- name: %[1]s-admin
  user:
    client-certificate-data: %[4]s
    client-key-data: %[5]s
contexts:
- name: %[1]s
  context:
    cluster: %[1]s
    user: %[1]s-admin
current-context: %[1]s
`, cluster, server, b64(caPEM), b64(certPEM), b64(keyPEM))
}
