package sim

import (
	"cmp"
	"path"
	"slices"
	"strconv"

	compute "google.golang.org/api/compute/v1"
)

// Attaching and detaching disks (instances.attachDisk, instances.detachDisk).
// As on GCE, a disk in READ_WRITE mode is attached to one instance at a
// time, and a running instance's boot disk stays. A data disk taken from
// a running instance's guest is an I/O error to it: the emulator crashes
// that machine's etcd, as etcd stops on a failed write. A disk attached to
// a running instance is seen by its guest at its next boot (the emulator
// reads the master-pd device's disk when a machine boots).

func (s *Server) detachDisk(r *request) (any, error) {
	key := instKey(r)
	dev := r.URL.Query().Get("deviceName")
	s.mu.Lock()
	in, err := s.instanceLocked(key)
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	i := slices.IndexFunc(in.Disks, func(d *compute.AttachedDisk) bool { return d.DeviceName == dev })
	if i < 0 {
		s.mu.Unlock()
		return nil, errInvalid("Invalid value for field 'deviceName': '%s'. No attached disk found with that device name.", dev)
	}
	d := in.Disks[i]
	if d.Boot && in.Status != "TERMINATED" {
		s.mu.Unlock()
		return nil, errInvalid("Invalid value for field 'deviceName': '%s'. The boot disk of a running instance cannot be detached.", dev)
	}
	if disk := s.w.Disks[relPath(r.project, d.Source)]; disk != nil {
		disk.Users = slices.DeleteFunc(disk.Users, func(u string) bool { return u == link(key) })
	}
	in.Disks = slices.Delete(in.Disks, i, i+1)
	for j, d := range in.Disks {
		d.Index = int64(j)
	}
	stop := func() {}
	if in.Status == "RUNNING" && dev == "master-pd" {
		s.w.Crashed[key] = true
		stop = s.crashLocked(key)
	}
	op := s.newOpLocked(zoneScope(r), "instances.detachDisk", key, in.Id, nil)
	s.mu.Unlock()
	stop()
	return op, nil
}

func (s *Server) attachDisk(r *request) (any, error) {
	key := instKey(r)
	return update(s, r, s.w.Instances, key, func(ad *compute.AttachedDisk, in *compute.Instance) (any, error) {
		if ad.Source == "" {
			return nil, errInvalid("Invalid value for field 'resource.source': ''. A disk to attach needs a source.")
		}
		dk := relPath(r.project, ad.Source)
		disk, ok := s.w.Disks[dk]
		if !ok {
			return s.newOpLocked(zoneScope(r), "instances.attachDisk", key, in.Id, opNotFound(dk)), nil
		}
		if scopeOf(dk) != "zones/"+r.zone {
			return nil, errInvalid("Disk '%s' must be in zone %s", dk, r.zone)
		}
		ad.Mode = cmp.Or(ad.Mode, "READ_WRITE")
		if len(disk.Users) > 0 && ad.Mode == "READ_WRITE" {
			return s.newOpLocked(zoneScope(r), "instances.attachDisk", key, in.Id, opInUse(dk, disk.Users[0])), nil
		}
		if disk.Status != "READY" {
			return s.newOpLocked(zoneScope(r), "instances.attachDisk", key, in.Id, opNotReady(dk)), nil
		}
		ad.DeviceName = cmp.Or(ad.DeviceName, path.Base(dk))
		if slices.ContainsFunc(in.Disks, func(d *compute.AttachedDisk) bool { return d.DeviceName == ad.DeviceName }) {
			return nil, errInvalid("Invalid value for field 'resource.deviceName': '%s'. A disk with this device name is attached already.", ad.DeviceName)
		}
		ad.Kind, ad.Type, ad.Index, ad.Source = "compute#attachedDisk", cmp.Or(ad.Type, "PERSISTENT"), int64(len(in.Disks)), link(dk)
		in.Disks = append(in.Disks, ad)
		disk.Users = append(disk.Users, link(key))
		return s.newOpLocked(zoneScope(r), "instances.attachDisk", key, in.Id, nil), nil
	})
}

// setDiskAutoDelete sets whether an attached disk is deleted with its
// instance (instances.setDiskAutoDelete?autoDelete=BOOL&deviceName=NAME).
func (s *Server) setDiskAutoDelete(r *request) (any, error) {
	key := instKey(r)
	q := r.URL.Query()
	dev := q.Get("deviceName")
	auto, err := strconv.ParseBool(q.Get("autoDelete"))
	if err != nil {
		return nil, errInvalid("Invalid value for field 'autoDelete': '%s'. Expected a boolean.", q.Get("autoDelete"))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	in, aerr := s.instanceLocked(key)
	if aerr != nil {
		return nil, aerr
	}
	i := slices.IndexFunc(in.Disks, func(d *compute.AttachedDisk) bool { return d.DeviceName == dev })
	if i < 0 {
		return nil, errInvalid("Invalid value for field 'deviceName': '%s'. No attached disk found with that device name.", dev)
	}
	in.Disks[i].AutoDelete = auto
	return s.newOpLocked(zoneScope(r), "instances.setDiskAutoDelete", key, in.Id, nil), nil
}
