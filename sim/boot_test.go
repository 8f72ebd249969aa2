package sim

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	compute "google.golang.org/api/compute/v1"

	"github.com/kubeha/kubeha/metadata"
)

// master is an emulated master created the way kubeha creates one: the
// internal address first (so the peer URL is known), then the disk, then the
// instance with its boot metadata.
type master struct {
	name, zone, ip string
}

func (m master) peerURL(scheme string) string   { return scheme + "://" + m.ip + ":2380" }
func (m master) clientURL(scheme string) string { return scheme + "://" + m.ip + ":2379" }

func reserve(t *testing.T, c *compute.Service, name, zone string) master {
	t.Helper()
	ctx := ctxT(t)
	ok(t, c)(c.Addresses.Insert(project, region, &compute.Address{Name: name + "-internal", AddressType: "INTERNAL"}).Context(ctx).Do())
	a, err := c.Addresses.Get(project, region, name+"-internal").Context(ctx).Do()
	if err != nil {
		t.Fatal(err)
	}
	ok(t, c)(c.Disks.Insert(project, zone, &compute.Disk{Name: name + "-pd", SizeGb: 20}).Context(ctx).Do())
	return master{name: name, zone: zone, ip: a.Address}
}

func initialCluster(scheme string, ms ...master) string {
	var parts []string
	for _, m := range ms {
		parts = append(parts, m.name+"="+m.peerURL(scheme))
	}
	return strings.Join(parts, ",")
}

func boot(t *testing.T, c *compute.Service, m master, scheme, cluster, state string, bundle *metadata.TLS) {
	t.Helper()
	etcd := metadata.Encode(metadata.Etcd{Name: m.name, PeerURL: m.peerURL(scheme), ClientURL: m.clientURL(scheme),
		InitialCluster: cluster, InitialClusterState: state})
	items := []*compute.MetadataItems{{Key: metadata.KeyEtcd, Value: &etcd}}
	if bundle != nil {
		v := metadata.Encode(bundle)
		items = append(items, &compute.MetadataItems{Key: metadata.KeyTLS, Value: &v})
	}
	ok(t, c)(c.Instances.Insert(project, m.zone, &compute.Instance{
		Name: m.name, MachineType: "n1-standard-2",
		Disks:             []*compute.AttachedDisk{{Source: zonalLink(m.zone, "disks", m.name+"-pd"), DeviceName: "master-pd"}},
		NetworkInterfaces: []*compute.NetworkInterface{{NetworkIP: m.ip}},
		Metadata:          &compute.Metadata{Items: items},
	}).Context(ctxT(t)).Do())
}

func etcdClient(t *testing.T, tlsCfg *tls.Config, endpoints ...string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 2 * time.Second, TLS: tlsCfg, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// eventually retries f until it succeeds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: still failing after %s: %v", what, timeout, err)
}

func status(cli *clientv3.Client, endpoint string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := cli.Status(ctx, endpoint)
	return err
}

func TestThreeMastersFormACluster(t *testing.T) {
	s, c := startSim(t, Options{})
	ms := []master{reserve(t, c, "m1", zoneB), reserve(t, c, "m2", zoneC), reserve(t, c, "m3", zoneD)}
	cluster := initialCluster("http", ms...)
	for _, m := range ms {
		boot(t, c, m, "http", cluster, metadata.StateNew, nil)
	}
	cli := etcdClient(t, nil, ms[0].clientURL("http"), ms[1].clientURL("http"))
	eventually(t, 20*time.Second, "cluster of three", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		l, err := cli.MemberList(ctx)
		if err != nil {
			return err
		}
		if len(l.Members) != 3 {
			return fmt.Errorf("%d members", len(l.Members))
		}
		_, err = cli.Put(ctx, "/before", "1")
		return err
	})
	for _, m := range ms {
		if err := status(cli, m.clientURL("http")); err != nil {
			t.Errorf("member %s on %s: %v", m.name, m.ip, err)
		}
	}

	// Crash m3: its member is gone, the VM stays RUNNING, the others keep quorum.
	postAdmin(t, s, "/sim/v1/projects/"+project+"/zones/"+zoneD+"/instances/m3/crash", "")
	if err := status(cli, ms[2].clientURL("http")); err == nil {
		t.Fatal("crashed member still answers")
	}
	in, _ := c.Instances.Get(project, zoneD, "m3").Do()
	if in.Status != "RUNNING" {
		t.Errorf("crashed instance is %s", in.Status)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "/during", "2"); err != nil {
		t.Fatalf("two of three lost quorum: %v", err)
	}
	var crashed bool
	for _, st := range s.Members() {
		crashed = crashed || (strings.HasSuffix(st.Instance, "/m3") && st.State == "crashed")
	}
	if !crashed {
		t.Errorf("members %+v: m3 not reported crashed", s.Members())
	}

	// Revive: it rejoins from its disk and catches up.
	postAdmin(t, s, "/sim/v1/projects/"+project+"/zones/"+zoneD+"/instances/m3/revive", "")
	only3 := etcdClient(t, nil, ms[2].clientURL("http"))
	eventually(t, 20*time.Second, "revived member catches up", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		r, err := only3.Get(ctx, "/during", clientv3.WithSerializable())
		if err != nil {
			return err
		}
		if len(r.Kvs) != 1 {
			return fmt.Errorf("key written while down not replicated yet")
		}
		return nil
	})

	// Delete m3: its member stops.
	ok(t, c)(c.Instances.Delete(project, zoneD, "m3").Do())
	if err := status(cli, ms[2].clientURL("http")); err == nil {
		t.Fatal("member of a deleted instance still answers")
	}
	if _, err := cli.Get(ctx, "/before"); err != nil {
		t.Fatal(err)
	}
}

func TestWrongInitialClusterFailsToJoin(t *testing.T) {
	s, c := startSim(t, Options{})
	m1 := reserve(t, c, "m1", zoneB)
	boot(t, c, m1, "http", initialCluster("http", m1), metadata.StateNew, nil)
	cli := etcdClient(t, nil, m1.clientURL("http"))
	eventually(t, 20*time.Second, "single member", func() error { return status(cli, m1.clientURL("http")) })
	// m2 claims to join an existing cluster that never added it.
	m2 := reserve(t, c, "m2", zoneC)
	boot(t, c, m2, "http", initialCluster("http", m1, m2), metadata.StateExisting, nil)
	eventually(t, 20*time.Second, "join fails", func() error {
		for _, st := range s.Members() {
			if strings.HasSuffix(st.Instance, "/m2") && st.State == "failed" && st.Error != "" {
				return nil
			}
		}
		return fmt.Errorf("members %+v", s.Members())
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	l, err := cli.MemberList(ctx)
	if err != nil || len(l.Members) != 1 {
		t.Fatalf("member list %v %v", l, err)
	}
	// Broken metadata: the VM runs, its etcd never starts.
	m3 := reserve(t, c, "m3", zoneD)
	bad := `{"name":"m3"}`
	ok(t, c)(c.Instances.Insert(project, zoneD, &compute.Instance{Name: "m3", MachineType: "n1-standard-2",
		NetworkInterfaces: []*compute.NetworkInterface{{NetworkIP: m3.ip}},
		Metadata:          &compute.Metadata{Items: []*compute.MetadataItems{{Key: metadata.KeyEtcd, Value: &bad}}}}).Do())
	found := false
	for _, st := range s.Members() {
		found = found || (strings.HasSuffix(st.Instance, "/m3") && st.State == "failed" && strings.Contains(st.Error, "peerURL"))
	}
	if !found {
		t.Errorf("members %+v: m3 with broken metadata not failed", s.Members())
	}
}

func TestMembersBootAgainAfterRestart(t *testing.T) {
	dir := t.TempDir()
	s, c := startSim(t, Options{Dir: dir})
	m1 := reserve(t, c, "m1", zoneB)
	boot(t, c, m1, "http", initialCluster("http", m1), metadata.StateNew, nil)
	cli := etcdClient(t, nil, m1.clientURL("http"))
	eventually(t, 20*time.Second, "write", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := cli.Put(ctx, "/k", "persisted")
		return err
	})
	// Stop the VM: its member stops. Start it: the member boots from its disk.
	ok(t, c)(c.Instances.Stop(project, zoneB, "m1").Do())
	if err := status(cli, m1.clientURL("http")); err == nil {
		t.Fatal("member of a stopped instance still answers")
	}
	ok(t, c)(c.Instances.Start(project, zoneB, "m1").Do())
	eventually(t, 20*time.Second, "member boots again on start", func() error { return status(cli, m1.clientURL("http")) })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := status(cli, m1.clientURL("http")); err == nil {
		t.Fatal("member still answers after the emulator closed")
	}
	startSim(t, Options{Dir: dir})
	eventually(t, 20*time.Second, "data survives a restart", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		r, err := cli.Get(ctx, "/k")
		if err != nil {
			return err
		}
		if len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "persisted" {
			return fmt.Errorf("got %v", r.Kvs)
		}
		return nil
	})
}

func TestTLSMembers(t *testing.T) {
	_, c := startSim(t, Options{})
	ca := newTestCA(t)
	otherCA := newTestCA(t)
	m1 := reserve(t, c, "m1", zoneB)
	boot(t, c, m1, "https", initialCluster("https", m1), metadata.StateNew, ca.bundle(t, m1.ip))
	client := ca.clientTLS(t)
	cli := etcdClient(t, client, m1.clientURL("https"))
	eventually(t, 20*time.Second, "TLS member with a client certificate", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := cli.Put(ctx, "/tls", "ok")
		return err
	})
	// Without a client certificate the member refuses the client.
	noCert := &tls.Config{RootCAs: client.RootCAs, MinVersion: tls.VersionTLS12}
	anon := etcdClient(t, noCert, m1.clientURL("https"))
	if err := status(anon, m1.clientURL("https")); err == nil {
		t.Fatal("a client without a certificate was served")
	}
	// A member with a certificate from another CA cannot join.
	m2 := reserve(t, c, "m2", zoneC)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cli.MemberAddAsLearner(ctx, []string{m2.peerURL("https")}); err != nil {
		t.Fatal(err)
	}
	boot(t, c, m2, "https", initialCluster("https", m1, m2), metadata.StateExisting, otherCA.bundle(t, m2.ip))
	time.Sleep(3 * time.Second)
	l, err := cli.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range l.Members {
		if len(m.PeerURLs) > 0 && m.PeerURLs[0] == m2.peerURL("https") && m.Name != "" {
			t.Fatalf("member with a foreign certificate joined: %+v", m)
		}
	}
}

// testCA issues certificates for the TLS test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  string
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}
}

func (ca *testCA) issue(t *testing.T, cn string, ips []string, usage []x509.ExtKeyUsage) (certPEM, keyPEM string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: usage}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}))
}

func (ca *testCA) bundle(t *testing.T, ip string) *metadata.TLS {
	both := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	pc, pk := ca.issue(t, "peer", []string{ip}, both)
	sc, sk := ca.issue(t, "server", []string{ip}, both)
	return &metadata.TLS{CA: ca.pem, PeerCert: pc, PeerKey: pk, ServerCert: sc, ServerKey: sk}
}

func (ca *testCA) clientTLS(t *testing.T) *tls.Config {
	c, k := ca.issue(t, "kubeha", nil, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth})
	pair, err := tls.X509KeyPair([]byte(c), []byte(k))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	return &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: pool, MinVersion: tls.VersionTLS12}
}
