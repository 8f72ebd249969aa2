package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// kubectl runs the kubectl users bring (Debian's), an independent client of
// what kubeha builds, with a kubeconfig.
type kubectl struct {
	t          testing.TB
	kubeconfig string
}

func (k kubectl) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", k.kubeconfig, "--request-timeout", "20s"}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// must runs kubectl and fails the test when it fails.
func (k kubectl) must(args ...string) string {
	k.t.Helper()
	out, err := k.run(args...)
	if err != nil {
		k.t.Fatal(err)
	}
	return out
}

// decode runs kubectl ... -o json into v.
func (k kubectl) decode(v any, args ...string) error {
	out, err := k.run(append(args, "-o", "json")...)
	if err != nil {
		return err
	}
	return json.Unmarshal([]byte(out), v)
}

type nodeList struct {
	Items []struct {
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Spec struct {
			Taints []struct {
				Key    string `json:"key"`
				Effect string `json:"effect"`
			} `json:"taints"`
		} `json:"spec"`
		Status struct {
			Conditions []struct {
				Type   string `json:"type"`
				Status string `json:"status"`
			} `json:"conditions"`
			NodeInfo struct {
				KubeletVersion string `json:"kubeletVersion"`
			} `json:"nodeInfo"`
		} `json:"status"`
	} `json:"items"`
}

// ready counts the Ready nodes, the tainted masters among them.
func (l nodeList) ready() (workers, masters int) {
	for _, n := range l.Items {
		ready := false
		for _, c := range n.Status.Conditions {
			ready = ready || (c.Type == "Ready" && c.Status == "True")
		}
		if !ready {
			continue
		}
		master := false
		for _, taint := range n.Spec.Taints {
			master = master || (taint.Key == "node-role.kubernetes.io/control-plane" && taint.Effect == "NoSchedule")
		}
		if master {
			masters++
		} else {
			workers++
		}
	}
	return workers, masters
}

// notReady names the nodes that are not Ready.
func (l nodeList) notReady() []string {
	var out []string
	for _, n := range l.Items {
		ready := false
		for _, c := range n.Status.Conditions {
			ready = ready || (c.Type == "Ready" && c.Status == "True")
		}
		if !ready {
			out = append(out, n.Metadata.Name)
		}
	}
	return out
}

type podList struct {
	Items []struct {
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Spec struct {
			NodeName string `json:"nodeName"`
		} `json:"spec"`
		Status struct {
			Phase string `json:"phase"`
		} `json:"status"`
	} `json:"items"`
}

// running counts the Running pods, and the nodes they run on.
func (l podList) running() (pods int, nodes map[string]int) {
	nodes = map[string]int{}
	for _, p := range l.Items {
		if p.Status.Phase == "Running" {
			pods++
			nodes[p.Spec.NodeName]++
		}
	}
	return pods, nodes
}

// newCSR is a PEM certificate request for cn in org, with a new key.
func newCSR(t testing.TB, cn, org string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn, Organization: []string{org}}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}
