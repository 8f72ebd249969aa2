package sim

import (
	"cmp"

	compute "google.golang.org/api/compute/v1"
)

// The legacy HTTP health checks of target pools.

func hcKey(r *request) string { return globalScope(r) + "/httpHealthChecks/" + r.name }

func (s *Server) insertHealthCheck(r *request) (any, error) {
	return create(s, r, s.w.HealthChecks, hcKey, func(hc *compute.HttpHealthCheck) string { return hc.Name }, func(key string, hc *compute.HttpHealthCheck) (any, error) {
		hc.Kind, hc.Id, hc.SelfLink, hc.CreationTimestamp = "compute#httpHealthCheck", s.w.newID(), link(key), nowStamp()
		hcDefaults(hc)
		s.w.HealthChecks[key] = hc
		return s.newOpLocked(globalScope(r), "httpHealthChecks.insert", key, hc.Id, nil), nil
	})
}

// hcDefaults fills what GCE fills in a legacy HTTP health check.
func hcDefaults(hc *compute.HttpHealthCheck) {
	if hc.Port == 0 {
		hc.Port = 80
	}
	hc.RequestPath = cmp.Or(hc.RequestPath, "/")
	if hc.CheckIntervalSec == 0 {
		hc.CheckIntervalSec = 5
	}
	if hc.TimeoutSec == 0 {
		hc.TimeoutSec = 5
	}
	if hc.HealthyThreshold == 0 {
		hc.HealthyThreshold = 2
	}
	if hc.UnhealthyThreshold == 0 {
		hc.UnhealthyThreshold = 2
	}
}

// updateHealthCheck serves httpHealthChecks.update: the whole check is
// replaced, its name, ID and creation kept.
func (s *Server) updateHealthCheck(r *request) (any, error) {
	key := hcKey(r)
	return update(s, r, s.w.HealthChecks, key, func(hc *compute.HttpHealthCheck, old *compute.HttpHealthCheck) (any, error) {
		if hc.Name != "" && hc.Name != old.Name {
			return nil, errInvalid("Invalid value for field 'resource.name': '%s'. The name cannot change.", hc.Name)
		}
		hc.Name, hc.Kind, hc.Id, hc.SelfLink, hc.CreationTimestamp = old.Name, old.Kind, old.Id, old.SelfLink, old.CreationTimestamp
		hcDefaults(hc)
		s.w.HealthChecks[key] = hc
		return s.newOpLocked(globalScope(r), "httpHealthChecks.update", key, hc.Id, nil), nil
	})
}

func (s *Server) deleteHealthCheck(r *request) (any, error) {
	key := hcKey(r)
	return locked(s, s.w.HealthChecks, key, func(hc *compute.HttpHealthCheck) (any, error) {
		if user := userOf(s.w.TargetPools, r.project, key, func(p *compute.TargetPool) []string { return p.HealthChecks }); user != "" {
			return nil, errInUse(key, link(user))
		}
		return s.newOpLocked(globalScope(r), "httpHealthChecks.delete", key, hc.Id, nil, effect{"healthCheck.delete", key}), nil
	})
}
