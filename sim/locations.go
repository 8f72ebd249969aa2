package sim

import (
	compute "google.golang.org/api/compute/v1"
)

// Zones and regions: the locations the emulator knows.

func regionScope(r *request) string { return "projects/" + r.project + "/regions/" + r.region }
func globalScope(r *request) string { return "projects/" + r.project + "/global" }

func (s *Server) zoneResource(project, zone string) *compute.Zone {
	region := s.regionOfZone(zone)
	return &compute.Zone{Kind: "compute#zone", Name: zone, Status: "UP", Id: uint64(len(zone)),
		Region: link("projects/" + project + "/regions/" + region), SelfLink: link("projects/" + project + "/zones/" + zone),
		Description: zone, AvailableCpuPlatforms: []string{"Intel Broadwell"}}
}

func (s *Server) getZone(r *request) (any, error) { return s.zoneResource(r.project, r.zone), nil }

func (s *Server) listZones(r *request) (any, error) {
	var zones []*compute.Zone
	for _, region := range sortedRegions(s.opts.Regions) {
		for _, z := range s.opts.Regions[region] {
			zones = append(zones, s.zoneResource(r.project, z))
		}
	}
	page, next, err := paginate(r, zones, func(z *compute.Zone) any { return z })
	if err != nil {
		return nil, err
	}
	return &compute.ZoneList{Kind: "compute#zoneList", Items: page, NextPageToken: next}, nil
}

func (s *Server) regionResource(project, region string) *compute.Region {
	var zones []string
	for _, z := range s.opts.Regions[region] {
		zones = append(zones, link("projects/"+project+"/zones/"+z))
	}
	return &compute.Region{Kind: "compute#region", Name: region, Status: "UP", Zones: zones, Description: region,
		SelfLink: link("projects/" + project + "/regions/" + region)}
}

func (s *Server) getRegion(r *request) (any, error) {
	return s.regionResource(r.project, r.region), nil
}

func (s *Server) listRegions(r *request) (any, error) {
	var regions []*compute.Region
	for _, region := range sortedRegions(s.opts.Regions) {
		regions = append(regions, s.regionResource(r.project, region))
	}
	page, next, err := paginate(r, regions, func(x *compute.Region) any { return x })
	if err != nil {
		return nil, err
	}
	return &compute.RegionList{Kind: "compute#regionList", Items: page, NextPageToken: next}, nil
}

func (s *Server) knownZone(zone string) bool {
	for _, zs := range s.opts.Regions {
		for _, z := range zs {
			if z == zone {
				return true
			}
		}
	}
	return false
}

func (s *Server) knownRegion(region string) bool {
	_, ok := s.opts.Regions[region]
	return ok
}

func (s *Server) regionOfZone(zone string) string {
	for r, zs := range s.opts.Regions {
		for _, z := range zs {
			if z == zone {
				return r
			}
		}
	}
	return ""
}

// DefaultRegions are the regions and zones an emulator knows by default
// (real names, so specs written for GCE work unchanged).
var DefaultRegions = map[string][]string{
	"europe-west1": {"europe-west1-b", "europe-west1-c", "europe-west1-d"},
	"europe-west4": {"europe-west4-a", "europe-west4-b", "europe-west4-c"},
	"us-central1":  {"us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"},
	"us-east1":     {"us-east1-b", "us-east1-c", "us-east1-d"},
	"us-west1":     {"us-west1-a", "us-west1-b", "us-west1-c"},
	"asia-east1":   {"asia-east1-a", "asia-east1-b", "asia-east1-c"},
}
