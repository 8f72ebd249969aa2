package sim

import (
	"encoding/json"
	"regexp"
	"sort"
	"strings"
)

var nameRe = regexp.MustCompile(`^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$`)

func checkName(name string) error {
	if !nameRe.MatchString(name) {
		return errInvalid("Invalid value for field 'resource.name': '%s'. Must be a match of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'", name)
	}
	return nil
}

// frozen marshals v while the lock is held, so the response cannot race
// with later changes.
func frozen(v any) (json.RawMessage, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return json.RawMessage(b), nil
}

func sortedKeys[T any](m map[string]*T, prefix string) []string {
	var keys []string
	for k := range m {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys
}

func getRes[T any](s *Server, m map[string]*T, key string) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := m[key]
	if !ok {
		return nil, errNotFound(key)
	}
	return frozen(v)
}

// listRes answers a list call over the resources under prefix.
func listRes[T any](s *Server, r *request, m map[string]*T, prefix string, wrap func([]*T, string) any) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var items []*T
	for _, k := range sortedKeys(m, prefix) {
		items = append(items, m[k])
	}
	page, next, err := paginate(r, items, func(t *T) any { return t })
	if err != nil {
		return nil, err
	}
	return frozen(wrap(page, next))
}

// aggRes answers an aggregatedList call: the project's resources grouped by
// scope ("zones/Z", "regions/R"), filtered and paginated across scopes. As in
// GCE, every scope of the kind appears; wrap gives the empty ones a
// NO_RESULTS_ON_PAGE warning.
func aggRes[T any](s *Server, r *request, m map[string]*T, zonal bool, wrap func(map[string][]*T, string) any) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := sortedKeys(m, "projects/"+r.project+"/")
	type kv struct {
		key string
		v   *T
	}
	items := make([]kv, len(keys))
	for i, k := range keys {
		items[i] = kv{k, m[k]}
	}
	page, next, err := paginate(r, items, func(e kv) any { return e.v })
	if err != nil {
		return nil, err
	}
	grouped := map[string][]*T{}
	for _, region := range sortedRegions(s.opts.Regions) {
		if !zonal {
			grouped["regions/"+region] = nil
			continue
		}
		for _, z := range s.opts.Regions[region] {
			grouped["zones/"+z] = nil
		}
	}
	for _, e := range page {
		grouped[scopeOf(e.key)] = append(grouped[scopeOf(e.key)], e.v)
	}
	return frozen(wrap(grouped, next))
}

// noResults is the warning code and message of an empty aggregated scope.
func noResults(scope string) (code, message string) {
	return "NO_RESULTS_ON_PAGE", "There are no results for scope '" + scope + "' on this page."
}

// update is the shape of every method that changes one resource (setLabels,
// addInstance, ...): it decodes the request's body into a B and, under the
// lock, hands it and the resource at key to change; a missing resource is
// 404.
func update[B, T any](s *Server, r *request, resources map[string]*T, key string, change func(body *B, res *T) (any, error)) (any, error) {
	var body B
	if err := r.decode(&body); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	res, ok := resources[key]
	if !ok {
		return nil, errNotFound(key)
	}
	return change(&body, res)
}

// create is the shape of every insert: it decodes the new resource, checks
// its name, and under the lock refuses a name that is taken (409) before
// fill checks, completes and stores it.
func create[T any](s *Server, r *request, resources map[string]*T, keyOf func(*request) string, name func(*T) string, fill func(key string, res *T) (any, error)) (any, error) {
	var res T
	if err := r.decode(&res); err != nil {
		return nil, err
	}
	if err := checkName(name(&res)); err != nil {
		return nil, err
	}
	r.name = name(&res)
	key := keyOf(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := resources[key]; ok {
		return nil, errAlreadyExists(key)
	}
	return fill(key, &res)
}

// remove is the shape of every delete: under the lock, the resource at key
// is handed to check, which refuses what GCE refuses (a resource in use)
// and returns the operation; a missing resource is 404.
func remove[T any](s *Server, resources map[string]*T, key string, check func(res *T) (any, error)) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	res, ok := resources[key]
	if !ok {
		return nil, errNotFound(key)
	}
	return check(res)
}
