package planner

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/kubeha/kubeha/internal/atomicfile"
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
}

// ErrStale says a saved plan no longer matches the spec or the world.
var ErrStale = errors.New("stale plan")

// NewSaved records a plan with what it was computed against.
func NewSaved(p *Plan, c *spec.Cluster, observed *state.Cluster, opts Options) *Saved {
	return &Saved{FormatVersion: FormatVersion, Plan: p, Spec: c, SpecPath: c.Source, SpecHash: c.Hash(),
		StateFingerprint: observed.Fingerprint(), Replace: opts.Replace}
}

// Check refuses a saved plan whose spec file changed or whose world changed.
// current is the spec as it is now read from SpecPath (nil if it cannot be
// read); observed is the state observed now.
func (s *Saved) Check(current *spec.Cluster, observed *state.Cluster) error {
	if current != nil && current.Hash() != s.SpecHash {
		return fmt.Errorf("%w: %s changed since the plan was made: run kubeha plan again", ErrStale, s.SpecPath)
	}
	if fp := observed.Fingerprint(); fp != s.StateFingerprint {
		return fmt.Errorf("%w: the cluster changed since the plan was made (state %s, plan made against %s): run kubeha plan again", ErrStale, fp, s.StateFingerprint)
	}
	return nil
}

// WriteSaved writes a saved plan atomically.
func WriteSaved(path string, s *Saved) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode plan: %w", err)
	}
	if err := atomicfile.Write(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("save plan: %w", err)
	}
	return nil
}

// ReadSaved reads a saved plan and checks it is one.
func ReadSaved(path string) (*Saved, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read plan %s: %w", path, err)
	}
	var s Saved
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("read plan %s: not a kubeha plan file (%v): write one with kubeha plan --out", path, err)
	}
	if s.FormatVersion != FormatVersion || s.Plan == nil || s.Spec == nil {
		return nil, fmt.Errorf("read plan %s: not a kubeha plan file of format %s: write one with kubeha plan --out", path, FormatVersion)
	}
	s.Spec.Source = s.SpecPath
	return &s, nil
}
