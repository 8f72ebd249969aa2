package cli

import (
	"bytes"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/kubeha/kubeha/executor"
	"github.com/kubeha/kubeha/planner"
	"github.com/kubeha/kubeha/state"
)

var ansi = regexp.MustCompile(`\x1b\[[0-9;]*[A-Za-z]`)

// screen replays what the live view wrote onto a line buffer, honouring the
// few sequences it uses (carriage return, cursor up, erase to the end), and
// returns the visible lines.
func screen(t *testing.T, out string) []string {
	t.Helper()
	var lines []string
	row := 0
	cur := func() *string {
		for len(lines) <= row {
			lines = append(lines, "")
		}
		return &lines[row]
	}
	for len(out) > 0 {
		if loc := ansi.FindStringIndex(out); loc != nil && loc[0] == 0 {
			seq := out[:loc[1]]
			out = out[loc[1]:]
			switch {
			case strings.HasSuffix(seq, "A"):
				var n int
				for _, c := range seq[2 : len(seq)-1] {
					n = n*10 + int(c-'0')
				}
				row -= n
				if row < 0 {
					t.Fatalf("cursor moved above the first line")
				}
			case seq == ansiClear:
				*cur() = ""
				lines = lines[:row+1]
			}
			continue
		}
		r, size := utf8.DecodeRuneInString(out)
		out = out[size:]
		switch r {
		case '\n':
			cur()
			row++
		case '\r':
		default:
			*cur() += string(r)
		}
	}
	for len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}

func TestLiveProgress(t *testing.T) {
	var buf bytes.Buffer
	clock := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	p := &progress{w: &buf, now: func() time.Time { return clock }, running: map[int]runningStep{}}
	p.start = clock
	const width = 72
	p.live, p.width = true, func() int { return width }
	p.stop, p.stopped = make(chan struct{}), make(chan struct{})
	close(p.stopped) // no refresh goroutine: the test redraws by events

	step := func(id string, a planner.Action, target string, ft int) *planner.Step {
		return &planner.Step{ID: id, Action: a, Target: target, Change: planner.Create,
			Etcd: state.Membership{Voters: 1, HealthyVoters: 1, Quorum: 1, FaultTolerance: ft}}
	}
	// The plan says the firewall leaves a fault tolerance of 1; what is
	// printed is the one measured after it (a member crashed meanwhile).
	fw := step("1", planner.CreateFirewall, "prod-master-etcd", 1)
	measured := &state.Membership{Voters: 1, HealthyVoters: 1, Quorum: 1, FaultTolerance: 0}
	vm := step("2", planner.CreateInstance, "prod-master-with-a-very-long-name-that-does-not-fit-on-one-terminal-line", 0)
	lb := step("3", planner.CreateTargetPool, "prod-master", 0)

	p.StepStarted(executor.Event{Step: fw, Index: 1, Total: 3})
	clock = clock.Add(300 * time.Millisecond)
	p.StepStarted(executor.Event{Step: vm, Index: 2, Total: 3})
	clock = clock.Add(1200 * time.Millisecond)
	p.redraw()
	got := screen(t, buf.String())
	want := []string{
		"⠋ [1/3] + create-firewall prod-master-etcd  1.5s",
		"⠋ [2/3] + create-instance prod-master-with-a-very-long-name-that…  1.2s",
		"0 of 3 done · 2 running · 2s elapsed · etcd: not yet changed",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("running block:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	p.StepFinished(executor.Event{Step: fw, Index: 1, Total: 3, Elapsed: 1500 * time.Millisecond, Etcd: measured})
	p.StepWaiting(executor.Event{Step: vm, Index: 2, Total: 3, Waiting: "wait for 3 healthy etcd voters: 2 of 3 voters healthy (a, b); down: c (no answer within 5s)"})
	p.StepStarted(executor.Event{Step: lb, Index: 3, Total: 3})
	p.StepFinished(executor.Event{Step: lb, Index: 3, Total: 3, Elapsed: 10 * time.Millisecond, Err: errors.New("quota exceeded")})
	got = screen(t, buf.String())
	want = []string{
		"✓ [1/3] + create-firewall prod-master-etcd  1.5s · etcd fault tolerance 0",
		"✗ [3/3] + create-target-pool prod-master failed after 0s: quota exceeded",
		"⠋ [2/3] + create-instance prod-master-with-a-very-long-name-that…  1.2s",
		"    wait for 3 healthy etcd voters: 2 of 3 voters healthy (a, b); down…", // what it waits for
		"1 failed · 1 of 3 done · 1 running · 2s elapsed · etcd: 1 voter, 1 hea…", // cut to 71 of 72 columns
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("after a finish and a failure:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, l := range got[2:] { // the live block; finished lines may wrap
		if n := utf8.RuneCountInString(l); n >= width {
			t.Errorf("line of %d columns wraps a %d-column terminal: %q", n, width, l)
		}
	}

	p.close()
	got = screen(t, buf.String())
	if len(got) != 2 || !strings.HasPrefix(got[1], "✗ [3/3]") {
		t.Fatalf("close left the live block on screen:\n%s", strings.Join(got, "\n"))
	}
	p.close() // idempotent
}

func TestProgressPlainWithoutTerminal(t *testing.T) {
	var buf bytes.Buffer
	p := newProgress(&buf, "text")
	defer p.close()
	if p.live {
		t.Fatal("live view on a buffer")
	}
	s := &planner.Step{ID: "1", Action: planner.CreateFirewall, Target: "prod-master-etcd", Change: planner.Create}
	p.StepStarted(executor.Event{Step: s, Index: 1, Total: 12})
	p.StepWaiting(executor.Event{Step: s, Index: 1, Total: 12, Waiting: "wait for 1 healthy etcd voters: 0 of 1 voters healthy; down: a (no leader)"})
	// The plan's fault tolerance (2) is not what is printed: the measured one is.
	s.Etcd.FaultTolerance = 2
	p.StepFinished(executor.Event{Step: s, Index: 1, Total: 12, Elapsed: 1500 * time.Millisecond, Etcd: &state.Membership{Voters: 3, HealthyVoters: 2, Quorum: 2}})
	want := "[ 1/12] + create-firewall prod-master-etcd ...\n" +
		"[ 1/12] + create-firewall prod-master-etcd wait for 1 healthy etcd voters: 0 of 1 voters healthy; down: a (no leader)\n" +
		"[ 1/12] + create-firewall prod-master-etcd done in 1.5s (etcd fault tolerance 0)\n"
	if buf.String() != want {
		t.Fatalf("plain lines:\n%q\nwant:\n%q", buf.String(), want)
	}
	if ansi.MatchString(buf.String()) {
		t.Fatal("escape sequences in plain output")
	}
}
