package sim

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"os"
	"testing"
	"time"

	compute "google.golang.org/api/compute/v1"

	"github.com/kubeha/kubeha/metadata"
	"github.com/kubeha/kubeha/pki"
	"github.com/kubeha/kubeha/sim/kubelet"
	"github.com/kubeha/kubeha/spec"
)

// BenchmarkServingBehindLoadBalancer measures, on an emulator whose masters
// run the whole control plane, the time from instances.insert of a master
// (added to the target pool at once) to the load balancer serving its API:
// the pool's health check finds it HEALTHY (kube-apiserver-healthcheck
// answers /readyz, twice in a row at the 2 s interval kubeha sets) and
// GET https://STATIC_IP/readyz answers 200 through the forwarding rule.
func BenchmarkServingBehindLoadBalancer(b *testing.B) {
	wd, _ := os.Getwd()
	bins, err := kubelet.FindBinaries(wd, spec.DefaultKubernetesVersion)
	if errors.Is(err, kubelet.ErrNoBinaries) || os.Geteuid() != 0 {
		b.Skip("needs make kube-binaries and root (kube-apiserver serves on 443)")
	}
	if err != nil {
		b.Fatal(err)
	}
	var total, healthy time.Duration
	for i := 0; i < b.N; i++ {
		h, s := serveBehindLB(b, bins)
		total += s
		healthy += h
	}
	b.ReportMetric(healthy.Seconds()/float64(b.N), "insert-to-healthy-s")
	b.ReportMetric(total.Seconds()/float64(b.N), "insert-to-serving-s")
}

func serveBehindLB(b *testing.B, bins *kubelet.Binaries) (toHealthy, toServing time.Duration) {
	ctx := context.Background()
	srv, err := Start(ctx, Options{Kubernetes: kubelet.Releases{bins}})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	c, err := srv.Client(ctx)
	if err != nil {
		b.Fatal(err)
	}
	do := func(op *compute.Operation, err error) { ok(b, c)(op, err) }
	do(c.Addresses.Insert(project, region, &compute.Address{Name: "lb-master-ip"}).Do())
	do(c.Addresses.Insert(project, region, &compute.Address{Name: "lb-master-internal", AddressType: "INTERNAL"}).Do())
	static, _ := c.Addresses.Get(project, region, "lb-master-ip").Do()
	internal, _ := c.Addresses.Get(project, region, "lb-master-internal").Do()
	do(c.HttpHealthChecks.Insert(project, &compute.HttpHealthCheck{Name: "lb-master-hc", Port: metadata.HealthCheckPort, RequestPath: metadata.HealthCheckPath,
		CheckIntervalSec: 2, TimeoutSec: 2, HealthyThreshold: 2, UnhealthyThreshold: 3}).Do())
	instance := "projects/" + project + "/zones/" + zoneB + "/instances/lb-master"
	do(c.TargetPools.Insert(project, region, &compute.TargetPool{Name: "lb-master",
		HealthChecks: []string{"projects/" + project + "/global/httpHealthChecks/lb-master-hc"}}).Do())
	do(c.ForwardingRules.Insert(project, region, &compute.ForwardingRule{Name: "lb-master", IPAddress: static.Address, IPProtocol: "TCP", PortRange: "443",
		Target: "projects/" + project + "/regions/" + region + "/targetPools/lb-master"}).Do())
	do(c.Disks.Insert(project, zoneB, &compute.Disk{Name: "lb-master-pd", SizeGb: 20}).Do())

	p, err := pki.Ensure(b.TempDir(), "lb")
	if err != nil {
		b.Fatal(err)
	}
	certs, err := p.IssueReplica(pki.ReplicaRequest{Cluster: "lb", Name: "lb-master", InternalIP: internal.Address, StaticIP: static.Address})
	if err != nil {
		b.Fatal(err)
	}
	rel, _ := spec.ReleaseOf(spec.DefaultKubernetesVersion)
	r := srv.Release()
	items, err := metadata.Render(metadata.Boot{Name: "lb-master", InternalIP: internal.Address, StaticIP: static.Address,
		InitialCluster: "lb-master=https://" + internal.Address + ":2380", ClusterState: metadata.StateNew, EtcdVersion: rel.Etcd, TLS: certs.Metadata(),
		KubeletURL: spec.KubeletURL(r.ReleaseURL, rel.Kubernetes), KubeletSHA512: r.KubeletSHA512[rel.Kubernetes],
		Config: metadata.Config{QuorumRead: true, ClientPort: 2379, PeerPort: 2380, MaxLearners: 1, KubernetesVersion: rel.Kubernetes}})
	if err != nil {
		b.Fatal(err)
	}
	var md []*compute.MetadataItems
	for _, it := range items {
		v := it.Value
		md = append(md, &compute.MetadataItems{Key: it.Key, Value: &v})
	}
	cert, key, _ := p.Admin()
	pair, _ := tls.X509KeyPair([]byte(cert), []byte(key))
	roots := x509.NewCertPool()
	roots.AddCert(p.ClusterCA.Cert)
	api := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: roots}}}

	t0 := time.Now()
	do(c.Instances.Insert(project, zoneB, &compute.Instance{Name: "lb-master", MachineType: "n1-standard-2",
		Disks:             []*compute.AttachedDisk{{Source: zonalLink(zoneB, "disks", "lb-master-pd"), DeviceName: "master-pd"}},
		NetworkInterfaces: []*compute.NetworkInterface{{NetworkIP: internal.Address}},
		Metadata:          &compute.Metadata{Items: md}}).Do())
	do(c.TargetPools.AddInstance(project, region, "lb-master", &compute.TargetPoolsAddInstanceRequest{Instances: []*compute.InstanceReference{{Instance: instance}}}).Do())
	for {
		h, err := c.TargetPools.GetHealth(project, region, "lb-master", &compute.InstanceReference{Instance: instance}).Do()
		if err == nil && h.HealthStatus[0].HealthState == "HEALTHY" {
			toHealthy = time.Since(t0)
			break
		}
		if time.Since(t0) > 3*time.Minute {
			b.Fatal("the master is not healthy behind the load balancer after 3 minutes")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for {
		resp, err := api.Get("https://" + static.Address + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return toHealthy, time.Since(t0)
			}
		}
		if time.Since(t0) > 3*time.Minute {
			b.Fatalf("the API at the static IP does not answer: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
