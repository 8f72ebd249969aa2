package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/kubeha/kubeha/state"
)

// StatusDoc is the document `kubeha status -o json` prints (DESIGN.md §5),
// for Go programs that read it; testdata/status.json holds its keys.
type StatusDoc struct {
	Cluster string `json:"cluster"`
	Project string `json:"project"`
	Region  string `json:"region"`
	// EmulatedControlPlane is what the emulator's masters run: "etcd only"
	// or "Kubernetes v1.37.2" (absent on GCE).
	EmulatedControlPlane string          `json:"emulatedControlPlane,omitempty"`
	Replicas             []StatusReplica `json:"replicas"`
	StaticIP             struct {
		Address    string `json:"address"`
		AttachedTo string `json:"attachedTo"`
	} `json:"staticIP"`
	LoadBalancer struct {
		Exists    bool     `json:"exists"`
		Instances []string `json:"instances"`
	} `json:"loadBalancer"`
	Etcd struct {
		state.Membership
		Reachable bool   `json:"reachable"`
		ClusterID string `json:"clusterID,omitempty"`
		Error     string `json:"error,omitempty"`
	} `json:"etcd"`
	Orphans struct {
		Members   []string `json:"members"`
		Disks     []string `json:"disks"`
		Addresses []string `json:"addresses"`
	} `json:"orphans"`
	// Restore says how to restore etcd when it has lost quorum or does not
	// answer while masters exist, or how to finish a restore under way;
	// absent otherwise.
	Restore *StatusRestore `json:"restore,omitempty"`
}

// StatusRestore is a StatusDoc's restore advice.
type StatusRestore struct {
	// Underway is the ID of a restore under way (its masters boot with it).
	Underway string `json:"underway,omitempty"`
	// Snapshot is the newest snapshot of the cluster in the backups
	// directory, with its revision and time ("" when there is none).
	Snapshot string    `json:"snapshot,omitempty"`
	Revision int64     `json:"revision,omitempty"`
	Taken    time.Time `json:"taken,omitzero"`
	// Command is what to run.
	Command string `json:"command"`
}

// StatusReplica is one master in a StatusDoc.
type StatusReplica struct {
	Name           string `json:"name"`
	Zone           string `json:"zone"`
	InstanceStatus string `json:"instanceStatus"`
	InternalIP     string `json:"internalIP"`
	ExternalIP     string `json:"externalIP,omitempty"`
	Etcd           struct {
		ID      string `json:"id,omitempty"`
		Role    string `json:"role"` // voter, learner or none
		Healthy bool   `json:"healthy"`
		Leader  bool   `json:"leader"`
		Error   string `json:"error,omitempty"`
	} `json:"etcd"`
}

func newStatusDoc(c *state.Cluster) *StatusDoc {
	d := &StatusDoc{Cluster: c.Name, Project: c.Project, Region: c.Region, Replicas: []StatusReplica{}}
	for _, r := range c.Replicas() {
		sr := StatusReplica{Name: r.Name(), Zone: r.Zone(), InstanceStatus: r.Instance.Status, InternalIP: r.Instance.InternalIP, ExternalIP: r.Instance.NatIP}
		sr.Etcd.Role = "none"
		if m := r.Member; m != nil {
			sr.Etcd.ID = strconv.FormatUint(m.ID, 16)
			sr.Etcd.Role = "voter"
			if m.IsLearner {
				sr.Etcd.Role = "learner"
			}
			sr.Etcd.Healthy, sr.Etcd.Leader, sr.Etcd.Error = m.Healthy, m.Leader, m.Error
		}
		d.Replicas = append(d.Replicas, sr)
	}
	if c.StaticIP != nil {
		d.StaticIP.Address = c.StaticIP.Address
		switch {
		case c.ForwardingRule != nil && c.ForwardingRule.IPAddress == c.StaticIP.Address:
			d.StaticIP.AttachedTo = "forwarding rule " + c.ForwardingRule.Name
		case len(c.StaticIP.Users) > 0:
			d.StaticIP.AttachedTo = "instance " + c.StaticIP.Users[0]
		}
	}
	d.LoadBalancer.Exists = c.ForwardingRule != nil && c.TargetPool != nil
	d.LoadBalancer.Instances = []string{}
	if c.TargetPool != nil {
		d.LoadBalancer.Instances = append(d.LoadBalancer.Instances, c.TargetPool.Instances...)
	}
	d.Etcd.Membership = c.Membership()
	d.Etcd.Reachable, d.Etcd.Error = c.Etcd.Reachable, c.Etcd.Error
	if c.Etcd.CertError != "" {
		d.Etcd.Error = c.Etcd.CertError // a certificate problem, not a down etcd
	}
	if c.Etcd.ClusterID != 0 {
		d.Etcd.ClusterID = strconv.FormatUint(c.Etcd.ClusterID, 16)
	}
	o := c.Orphans()
	d.Orphans.Members, d.Orphans.Disks, d.Orphans.Addresses = []string{}, []string{}, []string{}
	for _, m := range o.Members {
		d.Orphans.Members = append(d.Orphans.Members, strconv.FormatUint(m.ID, 16))
	}
	for _, x := range o.Disks {
		d.Orphans.Disks = append(d.Orphans.Disks, x.Name)
	}
	for _, x := range o.Addresses {
		d.Orphans.Addresses = append(d.Orphans.Addresses, x.Name)
	}
	return d
}

// renderStatusJSON writes the status document; emulated is what the
// emulator's masters run ("" on GCE).
func renderStatusJSON(w io.Writer, c *state.Cluster, emulated string, restore *StatusRestore) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	d := newStatusDoc(c)
	d.EmulatedControlPlane = emulated
	d.Restore = restore
	return enc.Encode(d)
}

func renderStatusText(w io.Writer, c *state.Cluster, emulated string) error {
	d := newStatusDoc(c)
	fmt.Fprintf(w, "Cluster %s (project %s, region %s)\n", d.Cluster, d.Project, d.Region)
	if emulated != "" {
		fmt.Fprintf(w, "Emulated masters run: %s\n", emulated)
	}
	switch {
	case d.StaticIP.Address == "":
		fmt.Fprintln(w, "Static IP: none")
	case d.StaticIP.AttachedTo == "":
		fmt.Fprintf(w, "Static IP: %s (not attached: it routes nowhere)\n", d.StaticIP.Address)
	default:
		fmt.Fprintf(w, "Static IP: %s on %s\n", d.StaticIP.Address, d.StaticIP.AttachedTo)
	}
	if d.LoadBalancer.Exists {
		fmt.Fprintf(w, "Load balancer: %d master(s) in the pool\n", len(d.LoadBalancer.Instances))
	} else {
		fmt.Fprintln(w, "Load balancer: none")
	}
	if d.Etcd.Reachable {
		fmt.Fprintf(w, "etcd: %s\n\n", membershipWords(d.Etcd.Membership))
	} else {
		fmt.Fprintf(w, "etcd: not reachable (%s)\n\n", d.Etcd.Error)
	}
	if len(d.Replicas) == 0 {
		fmt.Fprintln(w, "No masters.")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tZONE\tINSTANCE\tINTERNAL IP\tEXTERNAL IP\tETCD\tHEALTH\tLEADER")
	for _, r := range d.Replicas {
		health := "healthy"
		if !r.Etcd.Healthy {
			health = "unhealthy"
			if r.Etcd.Error != "" {
				health += ": " + r.Etcd.Error
			}
		}
		if r.Etcd.Role == "none" {
			health = "-"
		}
		leader := ""
		if r.Etcd.Leader {
			leader = "*"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.Zone, r.InstanceStatus, r.InternalIP, r.ExternalIP, r.Etcd.Role, health, leader)
	}
	return tw.Flush()
}
