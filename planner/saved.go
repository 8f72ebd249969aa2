package planner

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/kubeha/kubeha/spec"
	"github.com/kubeha/kubeha/state"
)

// Saved is a plan written by `kubeha plan --out` with what it was computed
// against, so that applying it after the spec or the world changed is
// refused rather than carried out against a state it was not made for.
type Saved struct {
	FormatVersion string `json:"formatVersion"`
	Plan          *Plan  `json:"plan"`
	// Spec is the defaulted spec the plan was made from; SpecPath is where it
	// was read (relative paths in it, such as pki.dir, resolve from there).
	Spec     *spec.Cluster `json:"spec"`
	SpecPath string        `json:"specPath"`
	SpecHash string        `json:"specHash"`
	// StateFingerprint identifies the observed state: instance and member
	// IDs, the etcd cluster ID and every resource's identity.
	StateFingerprint string   `json:"stateFingerprint"`
	Replace          []string `json:"replace,omitempty"`
	// Addons is the digest of spec.addons the plan was made with
	// (Options.Addons).
	Addons string `json:"addons,omitempty"`
	// Checksum is "sha256:" and the digest of the file's JSON with this
	// field empty: a file edited or cut short is refused as not intact.
	Checksum string `json:"checksum"`
}

// Sum is the digest of s with its Checksum empty, which a plan file
// carries in Checksum.
func (s Saved) Sum() (string, error) {
	s.Checksum = ""
	data, err := json.Marshal(s)
	if err != nil {
		return "", fmt.Errorf("encode plan: %w", err)
	}
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// ErrStale says a saved plan no longer matches the spec or the world.
var ErrStale = errors.New("stale plan")

// NewSaved records a plan with what it was computed against.
func NewSaved(p *Plan, c *spec.Cluster, observed *state.Cluster, opts Options) *Saved {
	return &Saved{FormatVersion: FormatVersion, Plan: p, Spec: c, SpecPath: c.Source, SpecHash: c.Hash(),
		StateFingerprint: observed.Fingerprint(), Replace: opts.Replace, Addons: opts.Addons}
}

// Check refuses a saved plan that is of another cluster, whose spec file
// changed or whose world changed, and one whose steps are not exactly
// those a plan made now would have: a plan file is never trusted step by
// step. current is the spec as it is now read from its file (nil if it
// cannot be read); observed is the state observed now; addons is the
// digest of spec.addons now (the add-on files are read as the plan is
// carried out, so files changed since are refused). It returns the plan
// to carry out: the one made now, whose steps are the saved ones.
func (s *Saved) Check(current *spec.Cluster, observed *state.Cluster, addons string) (*Plan, error) {
	if current != nil && current.Metadata.Name != s.Plan.Cluster {
		return nil, fmt.Errorf("%w: the plan is of cluster %s, and %s is cluster %s: apply a plan made from this spec", ErrOtherCluster, s.Plan.Cluster, current.Source, current.Metadata.Name)
	}
	if observed.Name != s.Plan.Cluster {
		return nil, fmt.Errorf("%w: the plan is of cluster %s, not of %s", ErrOtherCluster, s.Plan.Cluster, observed.Name)
	}
	if current != nil && current.Hash() != s.SpecHash {
		return nil, fmt.Errorf("%w: %s changed since the plan was made: run kubeha plan again", ErrStale, current.Source)
	}
	if addons != s.Addons {
		return nil, fmt.Errorf("%w: the add-ons of spec.addons changed since the plan was made (digest %s, plan made with %s): run kubeha plan again", ErrStale, addons, s.Addons)
	}
	if fp := observed.Fingerprint(); fp != s.StateFingerprint {
		return nil, fmt.Errorf("%w: the cluster changed since the plan was made (state %s, plan made against %s): run kubeha plan again", ErrStale, fp, s.StateFingerprint)
	}
	fresh, err := ComputeWith(s.Spec, observed, Options{Replace: s.Replace, Addons: s.Addons})
	if err != nil {
		return nil, fmt.Errorf("%w: a plan made now is refused: %w", ErrStale, err)
	}
	if diff := diffSteps(s.Plan.Steps, fresh.Steps); diff != "" {
		return nil, fmt.Errorf("%w: its steps are not the ones kubeha plans for this spec and cluster now: %s. Nothing was changed: make a new plan with kubeha plan --out", ErrMismatch, diff)
	}
	return fresh, nil
}

// ErrOtherCluster says a saved plan is of another cluster than the one
// it is applied to; ErrMismatch that its steps are not the ones planned now.
var (
	ErrOtherCluster = errors.New("plan of another cluster")
	ErrMismatch     = errors.New("plan steps differ")
)

// diffSteps names the first difference between saved and fresh steps, or
// returns "". A step's Reason is for reviewers (it may say how long a
// member has been down) and is not compared; every other field is.
func diffSteps(saved, fresh []*Step) string {
	for i := 0; i < max(len(saved), len(fresh)); i++ {
		switch {
		case i >= len(saved):
			return fmt.Sprintf("the saved plan has %d steps, and a plan made now has %d: it lacks step %s (%s %s)", len(saved), len(fresh), fresh[i].ID, fresh[i].Action, fresh[i].Target)
		case i >= len(fresh):
			return fmt.Sprintf("the saved plan has %d steps, and a plan made now has %d: step %s (%s %s) is not in it", len(saved), len(fresh), saved[i].ID, saved[i].Action, saved[i].Target)
		}
		if field := diffStep(saved[i], fresh[i]); field != "" {
			return fmt.Sprintf("step %d is %s %s in the saved plan and %s %s in a plan made now (first difference: %s)",
				i+1, saved[i].Action, saved[i].Target, fresh[i].Action, fresh[i].Target, field)
		}
	}
	return ""
}

// diffStep names the first JSON field in which two steps differ.
func diffStep(a, b *Step) string {
	fields := func(s *Step) map[string]json.RawMessage {
		c := *s
		c.Reason = ""
		data, _ := json.Marshal(&c)
		var m map[string]json.RawMessage
		_ = json.Unmarshal(data, &m)
		return m
	}
	fa, fb := fields(a), fields(b)
	keys := map[string]bool{}
	for k := range fa {
		keys[k] = true
	}
	for k := range fb {
		keys[k] = true
	}
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if string(fa[k]) != string(fb[k]) {
			return fmt.Sprintf("%s is %s, not %s", k, orMissing(fa[k]), orMissing(fb[k]))
		}
	}
	return ""
}

func orMissing(v json.RawMessage) string {
	if len(v) == 0 {
		return "missing"
	}
	return string(v)
}
