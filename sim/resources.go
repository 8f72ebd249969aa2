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
	return locked(s, m, key, func(v *T) (any, error) { return frozen(v) })
}

// page is one page of a list or aggregated list, as the API marshals it.
type page struct {
	Kind          string `json:"kind"`
	Items         any    `json:"items,omitempty"`
	NextPageToken string `json:"nextPageToken,omitempty"`
	SelfLink      string `json:"selfLink,omitempty"`
}

// listRes answers a list call over the collection (its path segment, e.g.
// "addresses") of one scope; kind is the resource's kind without its
// prefix ("address").
func listRes[T any](s *Server, r *request, m map[string]*T, scope, collection, kind string) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var items []*T
	for _, k := range sortedKeys(m, scope+"/"+collection+"/") {
		items = append(items, m[k])
	}
	items, next, err := paginate(r, items, func(t *T) any { return t })
	if err != nil {
		return nil, err
	}
	p := page{Kind: "compute#" + kind + "List", NextPageToken: next, SelfLink: link(scope + "/" + collection)}
	if len(items) > 0 {
		p.Items = items
	}
	return frozen(p)
}

// aggRes answers an aggregatedList call of a collection: the project's
// resources grouped by scope ("zones/Z", "regions/R"), filtered and
// paginated across scopes. As in GCE, every scope of the kind appears, the
// empty ones with a NO_RESULTS_ON_PAGE warning.
func aggRes[T any](s *Server, r *request, m map[string]*T, zonal bool, collection, kind string) (any, error) {
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
	items, next, err := paginate(r, items, func(e kv) any { return e.v })
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
	for _, e := range items {
		grouped[scopeOf(e.key)] = append(grouped[scopeOf(e.key)], e.v)
	}
	scoped := map[string]map[string]any{}
	for scope, l := range grouped {
		if len(l) == 0 {
			scoped[scope] = map[string]any{"warning": map[string]string{
				"code": "NO_RESULTS_ON_PAGE", "message": "There are no results for scope '" + scope + "' on this page."}}
			continue
		}
		scoped[scope] = map[string]any{collection: l}
	}
	return frozen(page{Kind: "compute#" + kind + "AggregatedList", Items: scoped, NextPageToken: next,
		SelfLink: link("projects/" + r.project + "/aggregated/" + collection)})
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

// locked is the shape of every method without a body that acts on one
// resource (delete, stop, start): under the lock, the resource at key is
// handed to act, which refuses what GCE refuses (a resource in use) and
// returns the operation; a missing resource is 404.
func locked[T any](s *Server, resources map[string]*T, key string, act func(res *T) (any, error)) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	res, ok := resources[key]
	if !ok {
		return nil, errNotFound(key)
	}
	return act(res)
}

// apiRoute is one method of the API: its pattern, its name in the API
// ("addresses.list") and its handler.
type apiRoute struct {
	pattern, method string
	h               handlerFunc
}

// reads are the methods of a collection that do nothing but read the
// world's map of it: list, get and, for zonal and regional collections,
// aggregatedList. scope is "zones", "regions" or "global"; collection its
// path segment ("addresses"); kind the resource's kind without its prefix
// ("address"). resources is called at each request.
func reads[T any](s *Server, scope, collection, kind string, resources func() map[string]*T) []apiRoute {
	const p = "/compute/v1/projects/{project}"
	path, scopeOf := p+"/global/"+collection, globalScope
	switch scope {
	case "zones":
		path, scopeOf = p+"/zones/{zone}/"+collection, zoneScope
	case "regions":
		path, scopeOf = p+"/regions/{region}/"+collection, regionScope
	}
	rs := []apiRoute{
		{"GET " + path, collection + ".list", func(r *request) (any, error) {
			return listRes(s, r, resources(), scopeOf(r), collection, kind)
		}},
		{"GET " + path + "/{name}", collection + ".get", func(r *request) (any, error) {
			return getRes(s, resources(), scopeOf(r)+"/"+collection+"/"+r.name)
		}},
	}
	if scope != "global" {
		rs = append(rs, apiRoute{"GET " + p + "/aggregated/" + collection, collection + ".aggregatedList", func(r *request) (any, error) {
			return aggRes(s, r, resources(), scope == "zones", collection, kind)
		}})
	}
	return rs
}

// userOf is the first resource of m, in key order, that refers to the
// resource at key by one of its refs (links or relative paths), or "".
func userOf[T any](m map[string]*T, project, key string, refs func(*T) []string) string {
	for _, k := range sortedKeys(m, "") {
		for _, ref := range refs(m[k]) {
			if ref != "" && relPath(project, ref) == key {
				return k
			}
		}
	}
	return ""
}
