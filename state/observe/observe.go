package observe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/iam/v1"
	"google.golang.org/api/secretmanager/v1"

	compute "google.golang.org/api/compute/v1"

	"github.com/kubeha/kubeha/internal/gceretry"
	"github.com/kubeha/kubeha/kubeapi"
	"github.com/kubeha/kubeha/metadata"
	"github.com/kubeha/kubeha/spec"
	"github.com/kubeha/kubeha/state"
)

// Source is where Observe looks.
type Source struct {
	Compute *compute.Service
	// EtcdTLS is kubeha's etcd client TLS (its client certificate and the
	// etcd CA); nil speaks plaintext, which only emulator tests do.
	EtcdTLS *tls.Config
	// EtcdTimeout bounds the member list and each member's status call;
	// default 3s.
	EtcdTimeout time.Duration
	// PKIDir is where EtcdTLS was read from, to name its files when etcd
	// refuses them.
	PKIDir string
	// IAM and Secrets read the masters' service account and key secrets
	// (nil: not observed).
	IAM     *iam.Service
	Secrets *secretmanager.Service
	// Kube reaches the Kubernetes API at the static IP (nil: the masters'
	// Nodes are not observed).
	Kube func(staticIP string) (*kubeapi.Client, error)
}

// ComputeRequests is the number of compute API calls one Observe makes for
// any cluster (one page each): aggregated instances, aggregated disks,
// aggregated addresses, the target pool, the forwarding rule, the health
// check, the firewall list and the network; one more, the subnetwork,
// when the spec names one.
const ComputeRequests = 8

// Observe reads a cluster's GCE resources and etcd membership. An
// unreachable member, or an etcd that does not answer at all, is data in the
// result, not an error; errors are GCE calls that failed.
func Cluster(ctx context.Context, src Source, c *spec.Cluster) (*state.Cluster, error) {
	out := &state.Cluster{Name: c.Metadata.Name, Project: c.Spec.GCE.Project, Region: c.Spec.GCE.Region, ObservedAt: time.Now().UTC()}
	if err := observeGCE(ctx, src, c, out); err != nil {
		return nil, err
	}
	timeout := src.EtcdTimeout
	if timeout == 0 {
		timeout = 3 * time.Second
	}
	observeEtcd(ctx, src.EtcdTLS, src.PKIDir, timeout, c, out)
	observeNodes(ctx, src, timeout, c, out)
	return out, nil
}

// observeNodes lists the masters' Nodes (label kubeha.io/master=CLUSTER)
// through the static IP. An API that does not answer (no master serves
// yet, or the control plane is down) leaves them unobserved: the planner
// then deletes no Node.
func observeNodes(ctx context.Context, src Source, timeout time.Duration, c *spec.Cluster, out *state.Cluster) {
	if src.Kube == nil || out.StaticIP == nil || out.StaticIP.Address == "" || len(out.Instances) == 0 {
		return
	}
	cli, err := src.Kube(out.StaticIP.Address)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	names, err := cli.NodeNames(ctx, metadata.MasterNodeLabel+"="+c.Metadata.Name)
	if err != nil {
		return
	}
	out.Nodes = &state.Nodes{Masters: names}
}

// masterNameRe matches kube-up's and kubeha's master names.
func masterNameRe(cluster string) string {
	return regexp.QuoteMeta(spec.MasterName(cluster)) + `(-[a-z0-9]{3})?`
}

func observeGCE(ctx context.Context, src Source, c *spec.Cluster, out *state.Cluster) error {
	svc := src.Compute
	project, region, name := c.Spec.GCE.Project, c.Spec.GCE.Region, c.Metadata.Name
	re := masterNameRe(name)
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	run := func(what string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A transient GCE error (429, 5xx) retries the whole call.
			if _, err := gceretry.Do(ctx, nil, "observe "+what, func() (struct{}, error) { return struct{}{}, f() }); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	var (
		instances []*compute.Instance
		disks     []*compute.Disk
		addresses []*compute.Address
		pool      *compute.TargetPool
		rule      *compute.ForwardingRule
		hc        *compute.HttpHealthCheck
		firewalls []*compute.Firewall
	)
	run("instances", func() error {
		instances = nil
		return svc.Instances.AggregatedList(project).Filter(fmt.Sprintf("name eq %q", re)).Pages(ctx, func(l *compute.InstanceAggregatedList) error {
			for _, sl := range l.Items {
				instances = append(instances, sl.Instances...)
			}
			return nil
		})
	})
	run("disks", func() error {
		disks = nil
		return svc.Disks.AggregatedList(project).Filter(fmt.Sprintf("name eq %q", re+"-pd")).Pages(ctx, func(l *compute.DiskAggregatedList) error {
			for _, sl := range l.Items {
				disks = append(disks, sl.Disks...)
			}
			return nil
		})
	})
	run("addresses", func() error {
		addresses = nil
		filter := fmt.Sprintf("name eq %q", re+"-internal|"+regexp.QuoteMeta(spec.StaticIPName(name)))
		return svc.Addresses.AggregatedList(project).Filter(filter).Pages(ctx, func(l *compute.AddressAggregatedList) error {
			for _, sl := range l.Items {
				addresses = append(addresses, sl.Addresses...)
			}
			return nil
		})
	})
	run("target pool", func() (err error) {
		pool, err = ignoreNotFound(svc.TargetPools.Get(project, region, spec.MasterName(name)).Context(ctx).Do())
		return err
	})
	run("forwarding rule", func() (err error) {
		rule, err = ignoreNotFound(svc.ForwardingRules.Get(project, region, spec.MasterName(name)).Context(ctx).Do())
		return err
	})
	run("health check", func() (err error) {
		hc, err = ignoreNotFound(svc.HttpHealthChecks.Get(project, spec.HealthCheckName(name)).Context(ctx).Do())
		return err
	})
	var network *state.Network
	run("network", func() (err error) {
		network, err = observeNetwork(ctx, svc, c.Spec.GCE)
		return err
	})
	var identity *state.Identity
	if src.IAM != nil && src.Secrets != nil {
		run("service account and secrets", func() (err error) {
			identity, err = observeIdentity(ctx, src, c)
			return err
		})
	}
	run("firewalls", func() error {
		firewalls = nil
		filter := fmt.Sprintf("name eq %q", regexp.QuoteMeta(spec.MasterName(name))+"-.*")
		return svc.Firewalls.List(project).Filter(filter).Pages(ctx, func(l *compute.FirewallList) error {
			firewalls = append(firewalls, l.Items...)
			return nil
		})
	})
	wg.Wait()
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	regions := map[string]bool{}
	for _, in := range instances {
		if !isMaster(in, name) {
			continue // named like a master, but another cluster's or role's: never ours
		}
		zone := path.Base(in.Zone)
		if !strings.HasPrefix(zone, region+"-") {
			regions[zoneRegion(zone)] = true
		}
		out.Instances = append(out.Instances, instanceOf(in))
	}
	for _, d := range disks {
		var users []string
		for _, u := range d.Users {
			users = append(users, path.Base(u))
		}
		out.Disks = append(out.Disks, &state.Disk{Name: d.Name, Zone: path.Base(d.Zone), SizeGb: d.SizeGb, Users: users})
	}
	for _, a := range addresses {
		var users []string
		for _, u := range a.Users {
			users = append(users, path.Base(u))
		}
		addr := &state.Address{Name: a.Name, Address: a.Address, Type: a.AddressType, Status: a.Status, Users: users, Region: path.Base(a.Region)}
		if addr.Region != region {
			regions[addr.Region] = true
			continue
		}
		if a.Name == spec.StaticIPName(name) {
			out.StaticIP = addr
		} else {
			out.Addresses = append(out.Addresses, addr)
		}
	}
	// A pool entry names an instance by zone and name: an entry of a
	// master deleted and made again in another zone (a restore, a
	// replacement) dangles beside the new one's.
	known := map[string]bool{}
	for _, in := range out.Instances {
		known[in.Zone+"/"+in.Name] = true
	}
	if pool != nil {
		tp := &state.TargetPool{Name: pool.Name}
		for _, l := range pool.Instances {
			if known[path.Base(path.Dir(path.Dir(l)))+"/"+path.Base(l)] {
				tp.Instances = append(tp.Instances, path.Base(l))
			} else {
				tp.Dangling = append(tp.Dangling, l)
			}
		}
		if len(pool.HealthChecks) > 0 {
			tp.HealthCheck = path.Base(pool.HealthChecks[0])
		}
		sort.Strings(tp.Instances)
		out.TargetPool = tp
	}
	if rule != nil {
		out.ForwardingRule = &state.ForwardingRule{Name: rule.Name, IPAddress: rule.IPAddress, Target: path.Base(rule.Target), PortRange: rule.PortRange}
	}
	if hc != nil {
		out.HealthCheck = &state.HealthCheck{Name: hc.Name, Port: hc.Port, Path: hc.RequestPath}
	}
	out.Network, out.Identity = network, identity
	for _, f := range firewalls {
		fw := &state.Firewall{Name: f.Name, SourceTags: f.SourceTags, TargetTags: f.TargetTags, Sources: f.SourceRanges}
		for _, a := range f.Allowed {
			if strings.EqualFold(a.IPProtocol, "tcp") {
				fw.Ports = append(fw.Ports, a.Ports...)
			}
		}
		out.Firewalls = append(out.Firewalls, fw)
	}
	for r := range regions {
		out.OtherRegions = append(out.OtherRegions, r)
	}
	sort.Strings(out.OtherRegions)
	sort.Slice(out.Instances, func(i, j int) bool { return out.Instances[i].Name < out.Instances[j].Name })
	sort.Slice(out.Disks, func(i, j int) bool { return out.Disks[i].Name < out.Disks[j].Name })
	sort.Slice(out.Addresses, func(i, j int) bool { return out.Addresses[i].Name < out.Addresses[j].Name })
	sort.Slice(out.Firewalls, func(i, j int) bool { return out.Firewalls[i].Name < out.Firewalls[j].Name })
	return nil
}

// isMaster says an instance named like a master belongs to this cluster:
// kubeha's labels name it, or it has none (a master kube-up created).
func isMaster(in *compute.Instance, cluster string) bool {
	if v, ok := in.Labels[spec.LabelCluster]; ok && v != cluster {
		return false
	}
	if v, ok := in.Labels[spec.LabelRole]; ok && v != spec.RoleMaster {
		return false
	}
	return true
}

func instanceOf(in *compute.Instance) *state.Instance {
	out := &state.Instance{Name: in.Name, Zone: path.Base(in.Zone), ID: in.Id, Status: in.Status, MachineType: path.Base(in.MachineType), Labels: in.Labels}
	if len(in.NetworkInterfaces) > 0 {
		ni := in.NetworkInterfaces[0]
		out.InternalIP = ni.NetworkIP
		if len(ni.AccessConfigs) > 0 {
			out.NatIP = ni.AccessConfigs[0].NatIP
			out.AccessName = ni.AccessConfigs[0].Name
		}
	}
	for _, d := range in.Disks {
		if d.DeviceName == spec.DiskDeviceName {
			out.HasDataDisk = true
		}
	}
	if in.Metadata != nil {
		out.Fingerprint = in.Metadata.Fingerprint
		for _, it := range in.Metadata.Items {
			if it.Value == nil {
				continue
			}
			switch it.Key {
			case metadata.KeyConfig:
				if cfg, err := metadata.ParseConfig(*it.Value); err == nil {
					out.Config = cfg
				}
			case metadata.KeyTLS:
				out.Certs = certInfo(*it.Value)
			case metadata.KeyEtcd:
				if e, err := metadata.ParseEtcd(*it.Value); err == nil {
					out.ClusterState, out.InitialCluster, out.Restore = e.InitialClusterState, e.InitialCluster, e.Restore
				}
			}
		}
	}
	return out
}

func ignoreNotFound[T any](v *T, err error) (*T, error) {
	var ge *googleapi.Error
	if errors.As(err, &ge) && ge.Code == http.StatusNotFound {
		return nil, nil
	}
	return v, err
}

func zoneRegion(zone string) string { return zone[:strings.LastIndex(zone, "-")] }

// observeEtcd reads the member list from any master that answers and each
// member's status in parallel, each call bounded by timeout.
func observeEtcd(ctx context.Context, tlsCfg *tls.Config, pkiDir string, timeout time.Duration, c *spec.Cluster, out *state.Cluster) {
	scheme := "https"
	if tlsCfg == nil {
		scheme = "http"
	}
	var endpoints []string
	for _, in := range out.Instances {
		if in.Status == "RUNNING" && in.InternalIP != "" {
			endpoints = append(endpoints, scheme+"://"+in.InternalIP+":"+strconv.Itoa(c.Spec.Etcd.ClientPort))
		}
	}
	if len(endpoints) == 0 {
		out.Etcd.Error = "no running master to ask"
		return
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: timeout, TLS: tlsCfg, Logger: zap.NewNop()})
	if err != nil {
		out.Etcd.Error = fmt.Sprintf("connect to etcd at %s: %v", strings.Join(endpoints, ","), err)
		return
	}
	defer cli.Close()
	list, err := memberList(ctx, cli, timeout)
	if err != nil {
		out.Etcd.Error = fmt.Sprintf("list etcd members at %s: %v", strings.Join(endpoints, ","), err)
		if tlsCfg != nil {
			out.Etcd.CertError = diagnoseTLS(ctx, endpoints, tlsCfg, timeout, pkiDir)
		}
		return
	}
	out.Etcd.Reachable = true
	out.Etcd.ClusterID = list.Header.ClusterId
	byIP := map[string]string{}
	for _, in := range out.Instances {
		byIP[in.InternalIP] = in.Name
	}
	names := map[string]bool{}
	for _, in := range out.Instances {
		names[in.Name] = true
	}
	for _, m := range list.Members {
		mem := &state.Member{ID: m.ID, Name: m.Name, PeerURLs: m.PeerURLs, ClientURLs: m.ClientURLs, IsLearner: m.IsLearner}
		switch {
		case names[m.Name]:
			mem.Instance = m.Name
		case len(m.PeerURLs) > 0:
			if u, err := url.Parse(m.PeerURLs[0]); err == nil {
				mem.Instance = byIP[u.Hostname()]
			}
		}
		out.Etcd.Members = append(out.Etcd.Members, mem)
	}
	sort.Slice(out.Etcd.Members, func(i, j int) bool { return out.Etcd.Members[i].ID < out.Etcd.Members[j].ID })
	var (
		wg       sync.WaitGroup
		leaderMu sync.Mutex
	)
	for _, m := range out.Etcd.Members {
		if len(m.ClientURLs) == 0 {
			m.Error, m.Unstarted = "not started: the member has not joined yet", true
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// One retry: a busy member that misses one deadline is not down.
			var st *clientv3.StatusResponse
			var err error
			for try := 0; try < 2; try++ {
				sctx, cancel := context.WithTimeout(ctx, timeout)
				st, err = cli.Status(sctx, m.ClientURLs[0])
				cancel()
				if err == nil {
					break
				}
			}
			switch {
			case err != nil:
				m.Error = fmt.Sprintf("status of %s: %v", m.ClientURLs[0], err)
			case st.Leader == 0:
				m.Error = "no leader: the member cannot reach a quorum"
			case len(st.Errors) > 0:
				m.Error = strings.Join(st.Errors, "; ")
			default:
				m.Healthy = true
				m.RaftIndex, m.DBSize = st.RaftIndex, st.DbSize
				m.IsLearner, m.Version = st.IsLearner, st.Version
				leaderMu.Lock()
				out.Etcd.LeaderID = st.Leader
				leaderMu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, m := range out.Etcd.Members {
		m.Leader = m.ID == out.Etcd.LeaderID && m.Healthy
	}
}

// memberList asks for a linearizable member list and, when there is no
// quorum to serve it, a serializable one from whichever member answers.
func memberList(ctx context.Context, cli *clientv3.Client, timeout time.Duration) (*clientv3.MemberListResponse, error) {
	lctx, cancel := context.WithTimeout(ctx, timeout)
	list, err := cli.MemberList(lctx)
	cancel()
	if err == nil {
		return list, nil
	}
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return cli.MemberList(sctx, clientv3.WithSerializable())
}

// certInfo reads the expiry and IP SANs of the certificates in a kubeha-tls
// document. The keys in it are dropped at once and never kept.
func certInfo(doc string) *state.CertInfo {
	t, err := metadata.ParseTLS(doc)
	if err != nil {
		return nil
	}
	info := &state.CertInfo{KeysInMetadata: t.PeerKey != "" || t.ServerKey != "" || t.APIServerKey != "" || t.ServiceAccountKey != "",
		NoNodeCredentials: t.KubeletCert == ""}
	for i, certPEM := range []string{t.PeerCert, t.ServerCert, t.APIServerCert} {
		if certPEM == "" {
			continue
		}
		block, _ := pem.Decode([]byte(certPEM))
		if block == nil {
			return nil
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil
		}
		if info.NotAfter.IsZero() || cert.NotAfter.Before(info.NotAfter) {
			info.NotAfter = cert.NotAfter
		}
		var ips []string
		for _, ip := range cert.IPAddresses {
			ips = append(ips, ip.String())
		}
		switch i {
		case 0:
			info.PeerIPs = ips
		case 2:
			info.APIServerIPs = ips
		}
	}
	return info
}
