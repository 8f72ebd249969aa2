package executor

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/kubeha/kubeha/planner"
	"github.com/kubeha/kubeha/state"
)

// memberHealth is one etcd member as a health check saw it.
type memberHealth struct {
	ID       uint64
	Name     string // the member's name (its instance), or its ID in hex before it started
	Learner  bool
	Started  bool // it has published its name and client URLs
	Endpoint string
	// Asked says a status call was made and finished; a check that ended
	// early (enough voters were healthy) leaves the others unasked.
	Asked     bool
	Healthy   bool
	Why       string // why it is not healthy
	Leader    uint64 // the leader it follows
	RaftIndex uint64
	Revision  int64
}

// health is the cluster's etcd as one check saw it: every member, each
// asked in parallel under its own deadline.
type health struct {
	Members []memberHealth
}

// voters are the members that vote.
func (h health) voters() []memberHealth {
	var out []memberHealth
	for _, m := range h.Members {
		if !m.Learner {
			out = append(out, m)
		}
	}
	return out
}

// healthyVoters counts the voters that answered and follow a leader.
func (h health) healthyVoters() int {
	n := 0
	for _, m := range h.voters() {
		if m.Healthy {
			n++
		}
	}
	return n
}

// membership is what the check measured, in the plan's terms.
func (h health) membership() state.Membership {
	v := len(h.voters())
	return state.NewMembership(v, len(h.Members)-v, h.healthyVoters())
}

// downVoters names the voters found down, with why.
func (h health) downVoters() []string {
	var out []string
	for _, m := range h.voters() {
		if m.Asked && !m.Healthy {
			out = append(out, m.Name+" ("+m.Why+")")
		}
	}
	return out
}

// String says what the check found: the healthy voters, the voters found
// down and why, and the learners.
func (h health) String() string {
	var healthy, learners []string
	for _, m := range h.Members {
		switch {
		case m.Learner && m.Started:
			learners = append(learners, m.Name)
		case m.Learner:
			learners = append(learners, m.Name+" (not started)")
		case m.Healthy:
			healthy = append(healthy, m.Name)
		}
	}
	v := len(h.voters())
	s := fmt.Sprintf("%d of %d voters healthy", len(healthy), v)
	if len(healthy) > 0 {
		s += " (" + strings.Join(healthy, ", ") + ")"
	}
	if down := h.downVoters(); len(down) > 0 {
		s += "; down: " + strings.Join(down, ", ")
	}
	if len(learners) > 0 {
		s += "; learners: " + strings.Join(learners, ", ")
	}
	return s
}

// check lists the members and asks every started member for its status,
// all at once, each under its own deadline (timeout from now), so that a
// member that does not answer costs only its own call. When enough > 0 the
// check ends as soon as that many voters are healthy; the members not yet
// answered are then left unasked.
func (e *etcd) check(ctx context.Context, timeout time.Duration, enough int) (health, error) {
	lctx, cancel := context.WithTimeout(ctx, e.timeout)
	members, err := e.members(lctx)
	cancel()
	if err != nil {
		return health{}, err
	}
	return e.statuses(ctx, members, timeout, enough), nil
}

// statuses asks the started members of a member list for their status, in
// parallel; see check.
func (e *etcd) statuses(ctx context.Context, members []*etcdserverpb.Member, timeout time.Duration, enough int) health {
	cli, err := e.client(nil)
	h := health{Members: make([]memberHealth, len(members))}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type answer struct {
		i int
		m memberHealth
	}
	answers := make(chan answer, len(members))
	asked := 0
	for i, m := range members {
		mh := memberHealth{ID: m.ID, Name: m.Name, Learner: m.IsLearner, Started: m.Name != "" && len(m.ClientURLs) > 0}
		if mh.Name == "" {
			mh.Name = fmt.Sprintf("%x", m.ID)
		}
		h.Members[i] = mh
		if !mh.Started || err != nil {
			h.Members[i].Asked, h.Members[i].Why = true, "not started: it has not joined yet"
			if err != nil {
				h.Members[i].Why = err.Error()
			}
			continue
		}
		mh.Endpoint = m.ClientURLs[0]
		h.Members[i].Endpoint = mh.Endpoint
		asked++
		go func() {
			sctx, scancel := context.WithTimeout(cctx, timeout)
			defer scancel()
			st, err := e.status(sctx, cli, mh.Endpoint)
			mh.Asked = true
			switch {
			case err != nil && cctx.Err() != nil && ctx.Err() == nil:
				mh.Asked = false // the check ended early: not asked after all
			case err != nil:
				mh.Why = statusError(err, timeout)
			case st.Leader == 0:
				mh.Why = "no leader: it cannot reach a quorum"
			case len(st.Errors) > 0:
				mh.Why = strings.Join(st.Errors, "; ")
			default:
				mh.Healthy, mh.Leader, mh.RaftIndex = true, st.Leader, st.RaftIndex
				if st.Header != nil {
					mh.Revision = st.Header.Revision
				}
				mh.Learner = st.IsLearner
			}
			answers <- answer{i, mh}
		}()
	}
	healthy := 0
	for range asked {
		a := <-answers
		h.Members[a.i] = a.m
		if a.m.Healthy && !a.m.Learner {
			healthy++
		}
		if enough > 0 && healthy >= enough {
			cancel()
		}
	}
	sort.SliceStable(h.Members, func(i, j int) bool { return h.Members[i].ID < h.Members[j].ID })
	return h
}

// statusError says in words why a status call failed.
func statusError(err error, timeout time.Duration) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Sprintf("no answer within %s", timeout)
	}
	if errors.Is(err, context.Canceled) {
		return "not asked: interrupted"
	}
	msg := err.Error()
	if i := strings.Index(msg, "desc = "); i >= 0 {
		msg = msg[i+len("desc = "):]
	}
	return msg
}

// downGrace is how long a gate waits for voters other than the step's
// own member that went down during the step before it says so and stops:
// the step is done, and what the plan assumed of the others no longer holds.
const downGrace = 10 * time.Second

// gate waits until at least want voters are healthy, telling report what
// it waits for each time that changes. The step's own member (subject, 0
// for none) may take the whole gate to come up; if instead the voters
// missing are others that stay down for downGrace, it stops and names them.
// It ends when ctx ends, or after e.gate with the last check's findings.
func (e *etcd) waitHealthy(ctx context.Context, want int, subject uint64, report func(string)) (health, error) {
	what := fmt.Sprintf("wait for %d healthy etcd voters", want)
	var last health
	var lastMsg string
	downSince := map[uint64]time.Time{}
	deadline := time.Now().Add(e.gate)
	for {
		h, err := e.check(ctx, e.timeout, want)
		msg := ""
		if err != nil {
			msg = err.Error()
		} else {
			last = h
			if h.healthyVoters() >= want {
				return h, nil
			}
			msg = h.String()
			if v := len(h.voters()); v < want {
				msg += fmt.Sprintf("; etcd has only %d voters, %d wanted", v, want)
			}
			if others := othersDown(h, subject, downSince); len(others) > 0 {
				return h, fmt.Errorf("%s: %s went down during the step and stayed down for %s: %s. The step itself is done; kubeha stops before the next membership change: run kubeha plan to see what to do",
					what, strings.Join(others, ", "), downGrace, msg)
			}
		}
		if msg != lastMsg && report != nil {
			report(what + ": " + msg)
		}
		lastMsg = msg
		if time.Now().After(deadline) {
			return last, fmt.Errorf("%s: still not there after %s: %s", what, e.gate, msg)
		}
		if serr := sleep(ctx, gatePoll); serr != nil {
			return last, fmt.Errorf("%s: %w (last seen: %s)", what, serr, msg)
		}
	}
}

// othersDown returns the voters other than subject that have been down for
// downGrace, when the subject itself is healthy or no longer votes (it was
// removed): then nothing the step does will bring the gate's count back.
// With no subject known (0) it returns nothing: any member may still be
// coming up.
func othersDown(h health, subject uint64, since map[uint64]time.Time) []string {
	if subject == 0 {
		return nil
	}
	now := time.Now()
	var long []string
	subjectOK := true
	for _, m := range h.voters() {
		if m.ID == subject {
			subjectOK = m.Healthy
			continue
		}
		if m.Healthy || !m.Asked {
			delete(since, m.ID)
			continue
		}
		if _, ok := since[m.ID]; !ok {
			since[m.ID] = now
		}
		if now.Sub(since[m.ID]) >= downGrace {
			long = append(long, m.Name+" ("+m.Why+")")
		}
	}
	if !subjectOK {
		return nil
	}
	return long
}

// leader returns the leader's ID and client URL, as the healthy members
// see it.
func (e *etcd) leader(ctx context.Context) (uint64, string, error) {
	h, err := e.check(ctx, e.timeout, 0)
	if err != nil {
		return 0, "", err
	}
	for _, m := range h.Members {
		if !m.Healthy || m.Leader == 0 {
			continue
		}
		for _, l := range h.Members {
			if l.ID == m.Leader && l.Endpoint != "" {
				return l.ID, l.Endpoint, nil
			}
		}
	}
	return 0, "", fmt.Errorf("no etcd member knows a leader: %s", h)
}

// measureTimeout bounds each member's status call when a finished step's
// membership is measured for progress.
const measureTimeout = 2 * time.Second

// measure is the membership as it is now, for progress: nil before the
// cluster has an etcd, or when no member could be listed.
func (x *executor) measure(ctx context.Context) *state.Membership {
	if !x.etcd.connected() {
		return nil
	}
	h, err := x.etcd.check(ctx, measureTimeout, 0)
	if err != nil {
		return nil
	}
	ms := h.membership()
	return &ms
}

// gate is the health gate of step s: it waits for want healthy voters
// (subject is the step's own member, 0 for none), telling the hooks what
// it waits for.
func (x *executor) gate(ctx context.Context, s *planner.Step, want int, subject uint64) error {
	_, err := x.etcd.waitHealthy(ctx, want, subject, func(msg string) { x.progress(s, msg) })
	return err
}

// progress tells the hooks what running step s does or waits for.
func (x *executor) progress(s *planner.Step, msg string) {
	ev := x.event(s)
	ev.Waiting = msg
	x.o.Hooks.StepWaiting(ev)
}

// preflight checks, before a membership change, that etcd has at least
// the healthy voters the step assumes (what the plan left before it), as
// cluster-api's control plane does before each scale step; else it fails
// at once, naming the members, and nothing is changed.
func (x *executor) preflight(ctx context.Context, s *planner.Step) error {
	want := x.assumed[s].HealthyVoters
	if want == 0 || !x.etcd.connected() {
		return nil
	}
	h, err := x.etcd.check(ctx, x.etcd.timeout, want)
	if err != nil {
		return fmt.Errorf("preflight: %w", err)
	}
	if h.healthyVoters() < want {
		return fmt.Errorf("preflight: the step assumes %d healthy etcd voters, and etcd has %d now: %s. Nothing was changed: run kubeha plan again once the members are back, or to plan around them",
			want, h.healthyVoters(), h)
	}
	return nil
}

// refusal adds to an error with which etcd refused a change ("unhealthy
// cluster" and the like) the members as they are now.
func (x *executor) refusal(ctx context.Context, err error) error {
	if err == nil || !isUnhealthyCluster(err) || !x.etcd.connected() {
		return err
	}
	h, herr := x.etcd.check(context.WithoutCancel(ctx), measureTimeout, 0)
	if herr != nil {
		return err
	}
	return fmt.Errorf("%w (etcd members now: %s)", err, h)
}
