package sim

import (
	"cmp"
	"path"
	"slices"
	"strings"

	compute "google.golang.org/api/compute/v1"
)

// Disks: zonal persistent disks; a master's master-pd is a directory that
// moves with the disk.

// diskTypes are the disk types the emulator knows (a zone's diskTypes).
var diskTypes = []string{"pd-standard", "pd-balanced", "pd-ssd", "pd-extreme"}

func diskKey(r *request) string { return zoneScope(r) + "/disks/" + r.name }

func (s *Server) insertDisk(r *request) (any, error) {
	return create(s, r, s.w.Disks, diskKey, func(d *compute.Disk) string { return d.Name }, func(key string, d *compute.Disk) (any, error) {
		if d.SizeGb == 0 {
			d.SizeGb = 10
		}
		if d.SizeGb < 0 || d.SizeGb > 65536 {
			return nil, errInvalid("Invalid value for field 'resource.sizeGb': '%d'. Disk size must be between 1 and 65536 GB.", d.SizeGb)
		}
		d.Kind, d.Id, d.SelfLink, d.CreationTimestamp = "compute#disk", s.w.newID(), link(key), nowStamp()
		d.Zone = link(zoneScope(r))
		d.Status = "CREATING" // READY when its operation is DONE
		d.Type = link(relPath(r.project, cmp.Or(d.Type, "zones/"+r.zone+"/diskTypes/pd-standard")))
		if t := path.Base(d.Type); !slices.Contains(diskTypes, t) || !strings.Contains(d.Type, "/zones/"+r.zone+"/") {
			return nil, errNotFound(strings.TrimPrefix(d.Type, canonicalBase))
		}
		d.LabelFingerprint = fingerprint(d.Labels)
		d.Users = nil
		s.w.Disks[key] = d
		return s.newOpLocked(zoneScope(r), "disks.insert", key, d.Id, nil, effect{"disk.ready", key}), nil
	})
}

func (s *Server) deleteDisk(r *request) (any, error) {
	key := diskKey(r)
	return locked(s, s.w.Disks, key, func(d *compute.Disk) (any, error) {
		if len(d.Users) > 0 {
			return nil, errInUse(key, d.Users[0])
		}
		d.Status = "DELETING"
		return s.newOpLocked(zoneScope(r), "disks.delete", key, d.Id, nil, effect{"disk.delete", key}), nil
	})
}
