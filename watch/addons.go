package watch

import (
	"fmt"
	"path/filepath"
	"sync"

	"github.com/fsnotify/fsnotify"
)

// addonDirs are the spec.addons.dir directories the watcher watches, and
// the specs each belongs to: a saved change of an add-on reconciles its
// clusters at once, as a change of their spec does. Only the directory's
// own files are watched; a change in a subdirectory waits for the resync.
type addonDirs struct {
	fw    *fsnotify.Watcher
	mu    sync.Mutex
	specs map[string]map[string]bool // directory → spec file names
}

// watch adds dir ("" for none) to the watched directories for spec.
func (a *addonDirs) watch(dir, spec string) error {
	if dir == "" {
		return nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("watch %s: %w", dir, err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.specs[abs][spec] {
		return nil
	}
	if _, watched := a.specs[abs]; !watched {
		if err := a.fw.Add(abs); err != nil {
			return fmt.Errorf("watch %s: %w", abs, err)
		}
		a.specs[abs] = map[string]bool{}
	}
	a.specs[abs][spec] = true
	return nil
}

// specsOf are the spec files whose add-ons are in dir.
func (a *addonDirs) specsOf(dir string) []string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for n := range a.specs[abs] {
		out = append(out, n)
	}
	return out
}
