// Package planfile reads and writes the plan files of kubeha plan --out,
// as terraform's plans/planfile does: the planner itself does no I/O.
package planfile

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/kubeha/kubeha/internal/atomicfile"
	"github.com/kubeha/kubeha/planner"
)

// ErrNotIntact says a plan file is not the one kubeha plan wrote.
var ErrNotIntact = errors.New("plan file not intact")

// Write writes a saved plan atomically, with its checksum.
func Write(path string, s *planner.Saved) error {
	sum, err := s.Sum()
	if err != nil {
		return err
	}
	s.Checksum = sum
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode plan: %w", err)
	}
	if err := atomicfile.Write(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("save plan: %w", err)
	}
	return nil
}

// Read reads a saved plan and checks it is one.
func Read(path string) (*planner.Saved, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read plan %s: %w", path, err)
	}
	var s planner.Saved
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("read plan %s: not a kubeha plan file (%v): write one with kubeha plan --out", path, err)
	}
	if s.FormatVersion != planner.FormatVersion || s.Plan == nil || s.Spec == nil {
		return nil, fmt.Errorf("read plan %s: not a kubeha plan file of format %s: write one with kubeha plan --out", path, planner.FormatVersion)
	}
	if sum, err := s.Sum(); err != nil || sum != s.Checksum {
		return nil, fmt.Errorf("%w: %s does not match its checksum (it was edited, cut short, or written by an older kubeha): nothing was changed; make a new plan with kubeha plan --out", ErrNotIntact, path)
	}
	if s.Plan.Cluster != s.Spec.Metadata.Name || s.Spec.Hash() != s.SpecHash {
		return nil, fmt.Errorf("%w: in %s the plan, its spec and the spec's hash do not agree: make a new plan with kubeha plan --out", ErrNotIntact, path)
	}
	s.Spec.Source = s.SpecPath
	return &s, nil
}
