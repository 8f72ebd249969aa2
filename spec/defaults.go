package spec

import "time"

// Default values filled in by SetDefaults.
const (
	DefaultNetwork     = "default"
	DefaultMachineType = "n1-standard-2"
	DefaultImage       = "projects/cos-cloud/global/images/family/cos-stable"
	DefaultDiskSizeGb  = 20
	DefaultDiskType    = "pd-ssd"
	// ReplaceByMember and ReplaceByDisk are spec.masters.replaceBy's
	// values: successor first, or the VM made again on its disk.
	ReplaceByMember       = "member"
	ReplaceByDisk         = "disk"
	DefaultClientPort     = 2379
	DefaultPeerPort       = 2380
	DefaultUnhealthyAfter = 5 * time.Minute
	DefaultPKIDir         = "pki"
)

// SetDefaults fills every optional field that is unset. It never overrides a
// value the user wrote, and it is idempotent.
func SetDefaults(c *Cluster) {
	s := &c.Spec
	if s.GCE.Network == "" {
		s.GCE.Network = DefaultNetwork
	}
	if s.Masters.MachineType == "" {
		s.Masters.MachineType = DefaultMachineType
	}
	if s.Masters.Image == "" {
		s.Masters.Image = DefaultImage
	}
	if s.Masters.DiskSizeGb == 0 {
		s.Masters.DiskSizeGb = DefaultDiskSizeGb
	}
	if s.Masters.DiskType == "" {
		s.Masters.DiskType = DefaultDiskType
	}
	if s.Masters.ReplaceBy == "" {
		s.Masters.ReplaceBy = ReplaceByMember
	}
	if s.Etcd.QuorumRead == nil {
		t := true
		s.Etcd.QuorumRead = &t
	}
	if s.Etcd.ClientPort == 0 {
		s.Etcd.ClientPort = DefaultClientPort
	}
	if s.Etcd.PeerPort == 0 {
		s.Etcd.PeerPort = DefaultPeerPort
	}
	if s.Remediation.UnhealthyAfter.Duration == 0 {
		s.Remediation.UnhealthyAfter.Duration = DefaultUnhealthyAfter
	}
	if s.PKI.Dir == "" {
		s.PKI.Dir = DefaultPKIDir
	}
	if s.Kubernetes.Version == "" {
		s.Kubernetes.Version = DefaultKubernetesVersion
	}
}
