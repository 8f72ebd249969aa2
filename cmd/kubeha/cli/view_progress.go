package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/term"

	"github.com/kubeha/kubeha/executor"
	"github.com/kubeha/kubeha/planner"
	"github.com/kubeha/kubeha/state"
)

// progress renders executor events in one of three ways:
//   - json: one JSON object per event, for machines;
//   - lines: a plain line per step start and finish, for CI logs, pipes,
//     NO_COLOR, TERM=dumb;
//   - live: on a terminal, each finished step is a line, and below them a
//     block redrawn in place shows the steps running now with their time so
//     far, and the totals.
type progress struct {
	mu    sync.Mutex
	w     io.Writer
	json  bool
	live  bool
	width func() int
	now   func() time.Time

	start   time.Time
	total   int
	done    int
	failed  int
	etcd    *state.Membership // after the step that finished last
	running map[int]runningStep
	drawn   int // lines of the live block on screen
	frame   int

	stop    chan struct{}
	stopped chan struct{}
}

type runningStep struct {
	event   executor.Event
	since   time.Time
	waiting string // what it waits for, if it said
}

var _ executor.Hooks = (*progress)(nil)

// liveRefresh is how often the live block is redrawn.
const liveRefresh = 100 * time.Millisecond

func newProgress(w io.Writer, format string) *progress {
	p := &progress{w: w, json: format == "json", now: time.Now, running: map[int]runningStep{}}
	p.start = p.now()
	if f, ok := w.(*os.File); ok && !p.json && liveTerminal(f) {
		fd := int(f.Fd())
		p.startLive(func() int {
			if w, _, err := term.GetSize(fd); err == nil && w > 0 {
				return w
			}
			return 80
		})
	}
	return p
}

// startLive turns on the live view for a terminal width columns wide.
func (p *progress) startLive(width func() int) {
	p.live, p.width = true, width
	p.stop, p.stopped = make(chan struct{}), make(chan struct{})
	go p.refresh()
}

// liveTerminal says whether f is a terminal that may be redrawn: not in CI
// (CI is set by GitHub Actions, GitLab, Buildkite, CircleCI, Travis and
// more), not with NO_COLOR (no-color.org), not on a dumb terminal.
func liveTerminal(f *os.File) bool {
	if os.Getenv("NO_COLOR") != "" || os.Getenv("CI") != "" || os.Getenv("TERM") == "dumb" {
		return false
	}
	return term.IsTerminal(int(f.Fd()))
}

func (p *progress) refresh() {
	defer close(p.stopped)
	t := time.NewTicker(liveRefresh)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.mu.Lock()
			p.frame++
			p.redraw()
			p.mu.Unlock()
		}
	}
}

// close stops the live view and clears its block, leaving the finished
// steps on screen. It is safe to call more than once.
func (p *progress) close() {
	if !p.live {
		return
	}
	p.mu.Lock()
	select {
	case <-p.stop:
		p.mu.Unlock()
		return
	default:
	}
	close(p.stop)
	p.mu.Unlock()
	<-p.stopped
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clear()
}

type event struct {
	Event     string `json:"event"`
	Step      string `json:"step"`
	Index     int    `json:"index"`
	Total     int    `json:"total"`
	Action    string `json:"action"`
	Target    string `json:"target"`
	Zone      string `json:"zone,omitempty"`
	ElapsedMS int64  `json:"elapsedMs,omitempty"`
	Error     string `json:"error,omitempty"`
	Waiting   string `json:"waiting,omitempty"`
	// Etcd is the membership the plan says the step leaves; Measured is
	// the one measured once it finished.
	Etcd     any `json:"etcd"`
	Measured any `json:"measuredEtcd,omitempty"`
}

func (p *progress) StepStarted(e executor.Event)  { p.emit("started", e) }
func (p *progress) StepWaiting(e executor.Event)  { p.emit("waiting", e) }
func (p *progress) StepFinished(e executor.Event) { p.emit("finished", e) }

func (p *progress) emit(kind string, e executor.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := e.Step
	p.total = e.Total
	switch kind {
	case "started":
		p.running[e.Index] = runningStep{event: e, since: p.now()}
	case "waiting":
		if r, ok := p.running[e.Index]; ok {
			r.waiting = e.Waiting
			p.running[e.Index] = r
		}
	default:
		delete(p.running, e.Index)
		if e.Err != nil {
			p.failed++
		} else {
			p.done++
			if e.Etcd != nil {
				p.etcd = e.Etcd
			}
		}
	}
	switch {
	case p.json:
		ev := event{Event: kind, Step: s.ID, Index: e.Index, Total: e.Total, Action: string(s.Action), Target: s.Target, Zone: s.Zone, Etcd: s.Etcd, Waiting: e.Waiting}
		if e.Etcd != nil {
			ev.Measured = e.Etcd
		}
		if kind == "finished" {
			ev.ElapsedMS = e.Elapsed.Milliseconds()
			if e.Err != nil {
				ev.Event, ev.Error = "failed", e.Err.Error()
			}
		}
		b, _ := json.Marshal(ev)
		fmt.Fprintln(p.w, string(b))
	case p.live:
		if kind == "finished" {
			p.clear()
			fmt.Fprintln(p.w, p.finishedLine(e))
		}
		p.redraw()
	default:
		label := stepLabel(e)
		switch {
		case kind == "started":
			fmt.Fprintf(p.w, "%s ...\n", label)
		case kind == "waiting":
			fmt.Fprintf(p.w, "%s %s\n", label, e.Waiting)
		case e.Err != nil:
			fmt.Fprintf(p.w, "%s failed after %s: %v\n", label, e.Elapsed.Round(time.Millisecond), e.Err)
		default:
			fmt.Fprintf(p.w, "%s done in %s%s\n", label, e.Elapsed.Round(time.Millisecond), measuredWords(e.Etcd))
		}
	}
}

func stepLabel(e executor.Event) string {
	s := e.Step
	return fmt.Sprintf("[%*d/%d] %s %s %s", len(fmt.Sprint(e.Total)), e.Index, e.Total, s.Change.Symbol(), s.Action, s.Target)
}

// ANSI sequences of the live view.
const (
	ansiGreen = "\x1b[32m"
	ansiRed   = "\x1b[31m"
	ansiCyan  = "\x1b[36m"
	ansiDim   = "\x1b[2m"
	ansiReset = "\x1b[0m"
	ansiClear = "\x1b[J" // erase from the cursor to the end of the screen
)

var spinner = []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}

func (p *progress) finishedLine(e executor.Event) string {
	d := e.Elapsed.Round(100 * time.Millisecond)
	if e.Err != nil {
		return ansiRed + "✗ " + stepLabel(e) + fmt.Sprintf(" failed after %s: %v", d, e.Err) + ansiReset
	}
	// Finished lines scroll above the live block and are never redrawn, so
	// they may wrap.
	ft := ""
	if e.Etcd != nil {
		ft = fmt.Sprintf(" · etcd fault tolerance %d", e.Etcd.FaultTolerance)
	}
	return ansiGreen + "✓" + ansiReset + " " + fmt.Sprintf("%s  %s", stepLabel(e), d) + ansiDim + ft + ansiReset
}

// measuredWords says the fault tolerance measured after a step: " (etcd
// fault tolerance N)", or nothing before the cluster has an etcd.
func measuredWords(m *state.Membership) string {
	if m == nil {
		return ""
	}
	return fmt.Sprintf(" (etcd fault tolerance %d)", m.FaultTolerance)
}

// clear erases the live block; the cursor is left where it began.
func (p *progress) clear() {
	if p.drawn > 0 {
		fmt.Fprintf(p.w, "\r\x1b[%dA%s", p.drawn, ansiClear)
		p.drawn = 0
	}
}

// redraw replaces the live block: a line per running step (oldest first,
// at most maxRunningLines), then the totals.
func (p *progress) redraw() {
	if !p.live {
		return
	}
	var b strings.Builder
	lines := 0
	idx := make([]int, 0, len(p.running))
	for i := range p.running {
		idx = append(idx, i)
	}
	sort.Slice(idx, func(a, b int) bool {
		ra, rb := p.running[idx[a]], p.running[idx[b]]
		if !ra.since.Equal(rb.since) {
			return ra.since.Before(rb.since)
		}
		return idx[a] < idx[b]
	})
	now := p.now()
	spin := spinner[p.frame%len(spinner)]
	const maxRunningLines = 8
	for n, i := range idx {
		if n == maxRunningLines {
			b.WriteString(ansiDim + p.fit(fmt.Sprintf("  … and %d more running", len(idx)-n), 0) + ansiReset + "\n")
			lines++
			break
		}
		r := p.running[i]
		elapsed := "  " + now.Sub(r.since).Round(100*time.Millisecond).String()
		text := p.fit(stepLabel(r.event), 2+len(elapsed)) + elapsed
		b.WriteString(ansiCyan + spin + ansiReset + " " + text + "\n")
		lines++
		if r.waiting != "" {
			b.WriteString(ansiDim + p.fit("    "+r.waiting, 0) + ansiReset + "\n")
			lines++
		}
	}
	etcd := "etcd: not yet changed"
	if p.etcd != nil {
		etcd = "etcd: " + membershipWords(*p.etcd)
	}
	summary := fmt.Sprintf("%d of %d done · %d running · %s elapsed · %s", p.done, p.total, len(p.running),
		now.Sub(p.start).Round(time.Second), etcd)
	if p.failed > 0 {
		summary = fmt.Sprintf("%d failed · ", p.failed) + summary
	}
	b.WriteString(ansiDim + p.fit(summary, 0) + ansiReset + "\n")
	lines++
	p.clear()
	io.WriteString(p.w, b.String())
	p.drawn = lines
}

// fit cuts s so that it and reserve more columns fit on one line of the
// terminal: a wrapped line would break the redraw.
func (p *progress) fit(s string, reserve int) string {
	w := p.width() - 1 - reserve
	if w < 10 {
		w = 10
	}
	if utf8.RuneCountInString(s) <= w {
		return s
	}
	r := []rune(s)
	return string(r[:w-1]) + "…"
}

// complete ends the progress of a plan carried out by verb (apply,
// destroy).
func (p *progress) complete(verb string, plan *planner.Plan, d time.Duration) {
	p.close()
	if p.json {
		b, _ := json.Marshal(map[string]any{"event": "complete", "steps": len(plan.Steps), "elapsedMs": d.Milliseconds(), "etcd": plan.After})
		fmt.Fprintln(p.w, string(b))
		return
	}
	fmt.Fprintf(p.w, "\n%s%s complete: %d steps in %s. etcd: %s\n", strings.ToUpper(verb[:1]), verb[1:], len(plan.Steps), d.Round(time.Millisecond), membershipWords(plan.After))
}
