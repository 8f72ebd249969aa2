package sim

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	compute "google.golang.org/api/compute/v1"

	"github.com/kubeha/kubeha/metadata"
	"github.com/kubeha/kubeha/pki"
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
		l, err := memberList(cli)
		if err != nil {
			return err
		}
		if len(l.Members) != 3 {
			return fmt.Errorf("%d members", len(l.Members))
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
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
	// A context of its own: the one of the write during the crash may have
	// run out while m3 revived (CI's loaded machine met it).
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if _, err := cli.Get(ctx2, "/before"); err != nil {
		t.Fatal(err)
	}
}

func TestWrongInitialClusterFailsToJoin(t *testing.T) {
	s, c := startSim(t, Options{})
	m1, cli := bootFirst(t, c)
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
	m1, cli := bootFirst(t, c)
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

// TestTLSMembers boots members with certificates from the pki package, as
// kubeha does: kubeha's client certificate is served, a client without one
// is refused, and a member with a certificate from another CA cannot join.
func TestTLSMembers(t *testing.T) {
	s, c := startSim(t, Options{})
	ours, err := pki.Ensure(t.TempDir(), "prod")
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := pki.Ensure(t.TempDir(), "prod")
	if err != nil {
		t.Fatal(err)
	}
	bundle := func(p *pki.PKI, m master) *metadata.TLS {
		certs, err := p.IssueReplica(pki.ReplicaRequest{Cluster: "prod", Name: m.name, InternalIP: m.ip})
		if err != nil {
			t.Fatal(err)
		}
		return certs.Metadata()
	}
	m1 := reserve(t, c, "m1", zoneB)
	boot(t, c, m1, "https", initialCluster("https", m1), metadata.StateNew, bundle(ours, m1))
	client, err := ours.ClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	cli := etcdClient(t, client, m1.clientURL("https"))
	eventually(t, 20*time.Second, "TLS member with kubeha's client certificate", func() error {
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
	// Another CA's client certificate is refused too.
	foreign, _ := theirs.ClientTLS()
	foreign.RootCAs = client.RootCAs
	if err := status(etcdClient(t, foreign, m1.clientURL("https")), m1.clientURL("https")); err == nil {
		t.Fatal("a client certificate from another CA was served")
	}
	// A member with a certificate from another CA cannot join.
	m2 := reserve(t, c, "m2", zoneC)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := cli.MemberAddAsLearner(ctx, []string{m2.peerURL("https")}); err != nil {
		t.Fatal(err)
	}
	boot(t, c, m2, "https", initialCluster("https", m1, m2), metadata.StateExisting, bundle(theirs, m2))
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
	// With our CA's certificate the same member joins.
	ok(t, c)(c.Instances.Delete(project, zoneC, "m2").Do())
	ok(t, c)(c.Disks.Delete(project, zoneC, "m2-pd").Do())
	ok(t, c)(c.Disks.Insert(project, zoneC, &compute.Disk{Name: "m2-pd"}).Do())
	boot(t, c, m2, "https", initialCluster("https", m1, m2), metadata.StateExisting, bundle(ours, m2))
	eventually(t, 20*time.Second, "member with our certificate joins", func() error {
		l, err := memberList(cli)
		if err != nil {
			return err
		}
		for _, m := range l.Members {
			if len(m.PeerURLs) > 0 && m.PeerURLs[0] == m2.peerURL("https") && m.Name == "m2" {
				return nil
			}
		}
		return fmt.Errorf("m2 has not joined: %v; emulated members: %+v", l.Members, s.Members())
	})
}

// syncBuffer is a log destination written by the members' goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestMemberAddressTaken: a member whose address a process took after it
// was handed out fails, and the emulator says, once, at error level, which
// address and which process to stop.
func TestMemberAddressTaken(t *testing.T) {
	var logs syncBuffer
	s, c := startSim(t, Options{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelError}))})
	m := reserve(t, c, "m1", zoneB)
	l, err := net.Listen("tcp", m.ip+":2380")
	if err != nil {
		t.Skipf("cannot listen on %s: %v", m.ip, err)
	}
	defer l.Close()
	boot(t, c, m, "http", initialCluster("http", m), metadata.StateNew, nil)
	holder := fmt.Sprintf("process %d (", os.Getpid())
	eventually(t, 20*time.Second, "the member fails and the emulator says why", func() error {
		for _, st := range s.Members() {
			if st.State == "failed" && st.Restarts >= 2 && strings.Contains(st.Error, "cannot listen on "+m.ip) && strings.Contains(st.Error, holder) &&
				strings.Contains(logs.String(), "stop the process that holds its address") {
				return nil
			}
		}
		return fmt.Errorf("members %+v, logs %q", s.Members(), logs.String())
	})
	if n := strings.Count(logs.String(), "level=ERROR"); n != 1 {
		t.Errorf("%d error lines, want the taken address reported once:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "listening on "+m.ip+":2380") {
		t.Errorf("the error does not name the address and port held: %s", logs.String())
	}
}

// TestRemovedMemberAskedForStatusCrashesAlone: etcd v3.7.3 panics when a
// member that was just removed answers a Status call ("failed to find
// local ID in cluster members"). On a VM that ends that etcd process only;
// in the emulator, whose etcd members share its process, it used to end the
// emulator with every master in it. The member must crash alone.
func TestRemovedMemberAskedForStatusCrashesAlone(t *testing.T) {
	s, c := startSim(t, Options{})
	m1, cli := bootFirst(t, c)
	eventually(t, 20*time.Second, "m1 serves", func() error { return status(cli, m1.clientURL("http")) })
	m2 := reserve(t, c, "m2", zoneC)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	added, err := cli.MemberAdd(ctx, []string{m2.peerURL("http")})
	if err != nil {
		t.Fatal(err)
	}
	boot(t, c, m2, "http", initialCluster("http", m1, m2), metadata.StateExisting, nil)
	eventually(t, 30*time.Second, "m2 serves", func() error { return status(cli, m2.clientURL("http")) })
	// Ask the member for its status as fast as possible while it is removed.
	asker := etcdClient(t, nil, m2.clientURL("http"))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				sctx, scancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
				asker.Status(sctx, m2.clientURL("http"))
				scancel()
			}
		}()
	}
	eventually(t, 20*time.Second, "remove m2", func() error { // refused until m2 has been active a while
		_, err := cli.MemberRemove(ctx, added.Member.ID)
		return err
	})
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	// The emulator and the other member still serve.
	if err := status(cli, m1.clientURL("http")); err != nil {
		t.Fatalf("m1 after m2's removal: %v", err)
	}
	if _, err := c.Instances.List(project, zoneB).Do(); err != nil {
		t.Fatalf("the emulator after m2's removal: %v", err)
	}
	for _, st := range s.Members() {
		if strings.HasSuffix(st.Instance, "/m2") {
			t.Logf("m2 after its removal: %s (%s), %d restarts", st.State, st.Error, st.Restarts)
		}
	}
}

// bootFirst boots m1, a single-member cluster over plain HTTP in zone B,
// and gives a client of it.
func bootFirst(t *testing.T, c *compute.Service) (master, *clientv3.Client) {
	t.Helper()
	m1 := reserve(t, c, "m1", zoneB)
	boot(t, c, m1, "http", initialCluster("http", m1), metadata.StateNew, nil)
	return m1, etcdClient(t, nil, m1.clientURL("http"))
}

// memberList asks cli for the members, for at most a second.
func memberList(cli *clientv3.Client) (*clientv3.MemberListResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return cli.MemberList(ctx)
}
