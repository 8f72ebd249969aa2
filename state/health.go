package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/kubeha/kubeha/internal/atomicfile"
)

// Health remembers since when each etcd member has been seen unhealthy, so
// that remediation.unhealthyAfter can be honoured across runs of kubeha. It
// lives in the cluster's PKI directory (HealthPath).
type Health struct {
	UnhealthySince map[string]time.Time `json:"unhealthySince"` // member ID (hex) -> first seen unhealthy
}

// HealthPath is where a cluster's health record lives: in its PKI
// directory, named for the cluster.
func HealthPath(pkiDir, cluster string) string {
	return filepath.Join(pkiDir, "health-"+cluster+".json")
}

// LoadHealth reads a health record; a missing file is an empty record.
func LoadHealth(path string) (*Health, error) {
	h := &Health{UnhealthySince: map[string]time.Time{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return h, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read health record: %w", err)
	}
	if err := json.Unmarshal(data, h); err != nil {
		return nil, fmt.Errorf("read health record %s: %w (delete it to start over)", path, err)
	}
	if h.UnhealthySince == nil {
		h.UnhealthySince = map[string]time.Time{}
	}
	return h, nil
}

// Apply records the members seen unhealthy in c and sets their UnhealthyFor;
// members that are healthy or gone are forgotten.
func (h *Health) Apply(c *Cluster) {
	seen := map[string]bool{}
	for _, m := range c.Etcd.Members {
		id := strconv.FormatUint(m.ID, 16)
		if m.Healthy || m.IsLearner {
			continue
		}
		seen[id] = true
		since, ok := h.UnhealthySince[id]
		if !ok || since.After(c.ObservedAt) {
			since = c.ObservedAt
			h.UnhealthySince[id] = since
		}
		m.UnhealthyFor = c.ObservedAt.Sub(since)
	}
	for id := range h.UnhealthySince {
		if !seen[id] {
			delete(h.UnhealthySince, id)
		}
	}
}

// Save writes the record atomically, readable by its owner only.
func (h *Health) Save(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("save health record: %w", err)
	}
	data, err := json.MarshalIndent(h, "", "  ")
	if err != nil {
		return fmt.Errorf("save health record: %w", err)
	}
	return atomicfile.Write(path, data, 0o600)
}
