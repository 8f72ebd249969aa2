package planner

import (
	"slices"
	"strings"

	"github.com/kubeha/kubeha/spec"
	"github.com/kubeha/kubeha/state"
)

// The property model's disk moves: a disk holds the data of one member and
// is attached to at most one VM, a VM deleted while its member is in the
// cluster is one whose disk moves, and a VM made again on a disk runs that
// disk's member, which must still be a voter of the cluster (etcd refuses
// a removed member's data).

// diskMemberOf is the member whose data the disk holds (0: none yet). A
// disk of the generated state holds the member named as its master.
func (m *model) diskMemberOf(disk string) uint64 {
	if id, ok := m.diskMember[disk]; ok {
		return id
	}
	for _, mem := range m.c.Etcd.Members {
		if mem.Name != "" && spec.DiskName(mem.Name) == disk {
			return mem.ID
		}
	}
	return 0
}

func (m *model) disk(name string) *state.Disk {
	for _, d := range m.c.Disks {
		if d.Name == name {
			return d
		}
	}
	return nil
}

// attach puts a new VM on its disk: never a disk another VM uses.
func (m *model) attach(s *Step, vm, disk string) {
	d := m.disk(disk)
	if d == nil {
		m.fail("step %s creates %s on disk %s, which does not exist", s.ID, vm, disk)
	}
	if len(d.Users) > 0 {
		m.fail("step %s attaches disk %s to %s while %v use it: two members on one disk", s.ID, disk, vm, d.Users)
	}
	d.Users = []string{vm}
}

// movesBooted counts the VMs the property tests made again on their disks.
var movesBooted int

// bootOnDisk runs the member of a disk moved to a new VM.
func (m *model) bootOnDisk(s *Step, in *state.Instance, disk string) {
	movesBooted++
	id := m.diskMemberOf(disk)
	var mem *state.Member
	for _, x := range m.c.Etcd.Members {
		if x.ID == id {
			mem = x
		}
	}
	if mem == nil || mem.IsLearner {
		m.fail("step %s boots %s on disk %s, whose member %x is no voter of the cluster (etcd refuses a removed member's data)", s.ID, in.Name, disk, id)
	}
	if mem.Instance != "" && m.instance(mem.Instance) != nil {
		m.fail("step %s boots member %x on %s while %s runs it: one member on two VMs", s.ID, id, in.Name, mem.Instance)
	}
	mem.Instance, mem.Name, mem.Healthy, mem.Error, mem.UnhealthyFor = in.Name, in.Name, true, "", 0
}

// joinOnDisk records that a new learner's data goes on its disk, which
// must hold no member of the cluster's.
func (m *model) joinOnDisk(s *Step, disk string, id uint64) {
	if old := m.diskMemberOf(disk); old != 0 && old != id && m.member("", old) != nil {
		m.fail("step %s boots a new member on disk %s, which holds member %x of the cluster: two members on one disk", s.ID, disk, old)
	}
	m.diskMember[disk] = id
}

// deleteVM deletes a master's VM: its member must be gone first, unless
// its disk is to move (the member then waits on the disk). The leader is
// never taken down without handing leadership away.
func (m *model) deleteVM(s *Step) {
	in := m.instance(s.Replica)
	if mem := m.member(s.Replica, 0); mem != nil {
		switch {
		case m.destroying:
			m.c.Etcd.Members = slices.DeleteFunc(m.c.Etcd.Members, func(x *state.Member) bool { return x == mem })
		case s.KeepDisk && !mem.IsLearner:
			if mem.Leader && len(m.c.Voters()) > 1 {
				m.fail("step %s deletes the VM of the etcd leader %s without moving leadership first", s.ID, s.Replica)
			}
			mem.Instance, mem.Healthy, mem.Leader, mem.Error = "", false, false, "its VM is gone" // it waits on its disk
		default:
			m.fail("step %s deletes %s while its etcd member is still in the cluster: an orphaned member", s.ID, s.Replica)
		}
	}
	for _, d := range m.c.Disks {
		d.Users = slices.DeleteFunc(d.Users, func(u string) bool { return u == s.Replica })
	}
	m.c.Instances = slices.DeleteFunc(m.c.Instances, func(x *state.Instance) bool { return x == in })
	if in != nil && m.c.StaticIP != nil && in.NatIP == m.c.StaticIP.Address {
		m.c.StaticIP.Status = "RESERVED"
	}
	if in != nil {
		for _, a := range m.c.Addresses {
			if strings.TrimSuffix(a.Name, "-internal") == in.Name {
				a.Status = "RESERVED"
			}
		}
	}
}
