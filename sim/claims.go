package sim

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Emulators on one machine hand out loopback addresses, so two of them
// must never hand out the same ones. Each claims the ranges it hands out
// (its subnet, and the block of each custom-mode subnetwork) in a
// directory every process of this machine sees: a file per range, held
// with flock(2) while the emulator runs. A claim whose holder is gone (a
// killed emulator) is free again, its lock gone with the process, unless
// the emulator keeps its state in a directory whose state still hands out
// that range: then it stays reserved for that state's next start (every
// kubeha --sim command starts one).

// ClaimsDir is where emulators of this machine claim their ranges.
var ClaimsDir = filepath.Join(os.TempDir(), "kubeha-sim-claims")

// claims are the ranges this emulator holds.
type claims struct {
	mu    sync.Mutex
	owner string // what the claim files say holds them
	state string // the emulator's state directory, absolute ("" for none)
	held  map[netip.Prefix]*os.File
}

func newClaims(dir string) *claims {
	c := &claims{owner: fmt.Sprintf("process %d (%s)", os.Getpid(), strings.Join(os.Args, " ")), held: map[netip.Prefix]*os.File{}}
	if dir != "" {
		c.state, _ = filepath.Abs(dir)
	}
	return c
}

// holder is who holds a claimed range: a running emulator, or the state
// directory of one that is not running.
type holder struct {
	who, state string
	running    bool
}

// ErrRangeInUse says a range overlaps one another running emulator holds.
var ErrRangeInUse = errors.New("address range in use")

func claimFile(p netip.Prefix) string {
	return filepath.Join(ClaimsDir, strings.ReplaceAll(p.String(), "/", "_")+".claim")
}

// claimsLocked runs fn holding the directory's own lock, so that two emulators
// starting at once do not both find a range free.
func claimsLocked(fn func() error) error {
	if err := os.MkdirAll(ClaimsDir, 0o1777); err != nil {
		return fmt.Errorf("claim addresses: %w", err)
	}
	os.Chmod(ClaimsDir, 0o1777) // every user's emulators share it
	f, err := os.OpenFile(filepath.Join(ClaimsDir, ".lock"), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return fmt.Errorf("claim addresses: %w", err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("claim addresses: lock %s: %w", f.Name(), err)
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return fn()
}

// live are the ranges held now by running emulators (this one's too) or
// reserved by the state of a stopped one; the files of others are removed.
func live() map[netip.Prefix]holder {
	out := map[netip.Prefix]holder{}
	entries, _ := os.ReadDir(ClaimsDir)
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".claim")
		if !ok {
			continue
		}
		p, err := netip.ParsePrefix(strings.ReplaceAll(name, "_", "/"))
		if err != nil {
			continue
		}
		path := filepath.Join(ClaimsDir, e.Name())
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			out[p] = holder{who: "another user's emulator"} // unreadable: treat as held
			continue
		}
		data, _ := os.ReadFile(path)
		who, state, _ := strings.Cut(strings.TrimSpace(string(data)), "\nstate=")
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
			f.Close()
			out[p] = holder{who: who, state: state, running: true}
			continue
		}
		f.Close()
		if state != "" && stateHandsOut(state, p) {
			out[p] = holder{who: "the emulator state in " + state + " (not running)", state: state}
			continue
		}
		os.Remove(path) // its emulator is gone, and so is its state
	}
	return out
}

// stateHandsOut says the emulator state in dir hands out range p.
func stateHandsOut(dir string, p netip.Prefix) bool {
	w, err := loadWorld(dir)
	if err != nil {
		return false
	}
	if w.Subnet == p.String() {
		return true
	}
	for _, b := range w.Blocks {
		if b.Loopback == p.String() {
			return true
		}
	}
	return false
}

// claim claims p, refusing a range that overlaps one a running emulator
// holds (this one included, for another of its ranges).
func (c *claims) claim(p netip.Prefix) error {
	p = p.Masked()
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.held[p]; ok {
		return nil
	}
	return claimsLocked(func() error { return c.claimLocked(p, live()) })
}

func (c *claims) claimLocked(p netip.Prefix, held map[netip.Prefix]holder) error {
	for q, h := range held {
		if _, mine := c.held[q]; mine && q != p {
			continue // another range of this emulator (they never overlap)
		}
		if q.Overlaps(p) && (h.running || c.state == "" || h.state != c.state || q != p) {
			return fmt.Errorf("%w: the emulator's addresses %s overlap %s, which %s hands out: stop that emulator (or remove its state), or give this one another range (kubeha sim serve --subnet, KUBEHA_SIM_SUBNET with --sim)", ErrRangeInUse, p, q, h.who)
		}
	}
	f, err := os.OpenFile(claimFile(p), os.O_CREATE|os.O_RDWR|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("claim addresses %s: %w", p, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return fmt.Errorf("claim addresses %s: %w", p, err)
	}
	f.WriteString(c.owner)
	if c.state != "" {
		f.WriteString("\nstate=" + c.state)
	}
	c.held[p] = f
	return nil
}

// claimFirst claims the first of candidate(0), candidate(1), ... that
// overlaps no running emulator's range, trying at most n.
func (c *claims) claimFirst(n int, candidate func(i int) netip.Prefix) (netip.Prefix, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var got netip.Prefix
	err := claimsLocked(func() error {
		held := live()
		for i := range n {
			p := candidate(i).Masked()
			if _, mine := c.held[p]; mine {
				continue
			}
			if err := c.claimLocked(p, held); err == nil {
				got = p
				return nil
			} else if !errors.Is(err, ErrRangeInUse) {
				return err
			}
		}
		return fmt.Errorf("%w: every one of %d loopback ranges is held by a running emulator: stop one", ErrRangeInUse, n)
	})
	return got, err
}

// release gives every range back; those of an emulator with a state
// directory stay reserved for it while its state hands them out.
func (c *claims) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for p, f := range c.held {
		if c.state == "" {
			os.Remove(claimFile(p))
		}
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
		delete(c.held, p)
	}
}

// defaultSubnet is the n-th /16 an emulator without a subnet may take:
// 127.0.0.0/16 first (kubeha's default), then 127.1.0.0/16 and up; custom
// subnetworks' blocks count down from 127.254.0.0/16.
func defaultSubnet(n int) netip.Prefix {
	return netip.MustParsePrefix("127." + strconv.Itoa(n) + ".0.0/16")
}

// claimRanges claims the ranges the emulator hands out: those of its
// state when it was loaded (refused at once, naming the holder, when
// another running emulator holds one), else opts.Subnet, else the first
// /16 of 127.0.0.0/8 no running emulator holds.
func (s *Server) claimRanges(loaded bool) error {
	claim := func(cidr string) error {
		p, err := netip.ParsePrefix(cidr)
		if err != nil || !p.Addr().IsLoopback() {
			return nil // nothing of this machine is handed out
		}
		return s.claims.claim(p)
	}
	if loaded {
		if err := claim(s.w.Subnet); err != nil {
			return fmt.Errorf("start the emulator of %s: %w", s.opts.Dir, err)
		}
		for _, b := range s.w.Blocks {
			if err := claim(b.Loopback); err != nil {
				return fmt.Errorf("start the emulator of %s: %w", s.opts.Dir, err)
			}
		}
		return nil
	}
	if s.opts.Subnet != "" {
		if err := claim(s.opts.Subnet); err != nil {
			return fmt.Errorf("start the emulator: %w", err)
		}
		s.w = newWorld(s.opts.Subnet)
		return nil
	}
	p, err := s.claims.claimFirst(254, defaultSubnet)
	if err != nil {
		return fmt.Errorf("start the emulator: %w", err)
	}
	s.w = newWorld(p.String())
	return nil
}
