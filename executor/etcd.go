package executor

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kubeha/kubeha/internal/strs"
)

// Reconnect is how kubeha's etcd clients reconnect to a member it could not reach.
// gRPC's default waits 1s before the first retry and grows to 2 minutes;
// kubeha watches members come up (the bootstrap master, a restarted one),
// and every call waits for a connection, so a member that starts listening
// should be reached within a poll or two, not a backoff later.
var Reconnect = grpc.ConnectParams{
	Backoff:           grpcbackoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
	MinConnectTimeout: 5 * time.Second,
}

// etcd talks to the cluster's etcd through whichever members answer.
type etcd struct {
	tls     *tls.Config
	timeout time.Duration // one call
	gate    time.Duration // a health gate or a retried membership change

	mu  sync.Mutex
	cli *clientv3.Client

	// eps orders endpoint changes after per-member calls: clientv3 (3.7.3)
	// reads the endpoints unlocked when it dials a member for Status, so
	// SetEndpoints and Status must not run at once.
	eps sync.RWMutex
}

// setEndpoints points the client at endpoints. Health gates list the
// members every poll, so an unchanged list is left alone rather than handed
// to gRPC's resolver again.
func (e *etcd) setEndpoints(cli *clientv3.Client, endpoints []string) {
	if strs.SameSet(cli.Endpoints(), endpoints) {
		return
	}
	e.eps.Lock()
	defer e.eps.Unlock()
	cli.SetEndpoints(endpoints...)
}

// status asks one member for its status.
func (e *etcd) status(ctx context.Context, cli *clientv3.Client, endpoint string) (*clientv3.StatusResponse, error) {
	e.eps.RLock()
	defer e.eps.RUnlock()
	return cli.Status(ctx, endpoint)
}

func (e *etcd) client(endpoints []string) (*clientv3.Client, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cli != nil {
		if len(endpoints) > 0 {
			e.setEndpoints(e.cli, endpoints)
		}
		return e.cli, nil
	}
	if len(endpoints) == 0 {
		return nil, errors.New("no etcd endpoint is known yet")
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: e.timeout, TLS: e.tls, Logger: zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(Reconnect)}})
	if err != nil {
		return nil, fmt.Errorf("connect to etcd at %s: %w", strings.Join(endpoints, ","), err)
	}
	e.cli = cli
	return cli, nil
}

func (e *etcd) close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cli != nil {
		e.cli.Close()
		e.cli = nil
	}
}

// members lists the members and points the client at every started one.
func (e *etcd) members(ctx context.Context) ([]*etcdserverpb.Member, error) {
	cli, err := e.client(nil)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	resp, err := cli.MemberList(cctx)
	if err != nil {
		return nil, fmt.Errorf("list etcd members: %w", err)
	}
	var eps []string
	for _, m := range resp.Members {
		if !m.IsLearner { // a learner refuses most RPCs
			eps = append(eps, m.ClientURLs...)
		}
	}
	if len(eps) > 0 {
		e.setEndpoints(cli, eps)
	}
	return resp.Members, nil
}

// retry runs f until it succeeds, it fails with an error retryable does not
// accept, or the gate's time is up, backing off between tries.
func (e *etcd) retry(ctx context.Context, what string, retryable func(error) bool, f func(context.Context) error) error {
	return e.poll(ctx, what, 0, retryable, f)
}

// gatePoll is how often a health gate looks: a member that comes up should
// be seen at once, but each look is a status call (a new connection) to
// every voter of a production etcd. 50ms gained nothing measurable in the
// apply benchmark (docs/benchmarks.md), so it stays at 100ms.
const gatePoll = 100 * time.Millisecond

// poll is retry with a fixed interval between tries (0: backoff).
func (e *etcd) poll(ctx context.Context, what string, interval time.Duration, retryable func(error) bool, f func(context.Context) error) error {
	deadline := time.Now().Add(e.gate)
	for attempt := 0; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, e.timeout)
		err := f(cctx)
		cancel()
		if err == nil {
			return nil
		}
		if !retryable(err) && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("%s: %w", what, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: still failing after %s: %w", what, e.gate, err)
		}
		wait := interval
		if wait == 0 {
			wait = min(backoff(attempt), 2*time.Second)
		}
		if serr := sleep(ctx, wait); serr != nil {
			return fmt.Errorf("%s: %w (last error: %v)", what, serr, err)
		}
	}
}

// isUnhealthyCluster says etcd refused a change for now, or the member
// asked could not serve it (it stopped, e.g. it was just removed, or there
// was no leader): worth trying again, through another member.
func isUnhealthyCluster(err error) bool {
	if errors.Is(err, rpctypes.ErrGRPCUnhealthy) || errors.Is(err, rpctypes.ErrUnhealthy) ||
		errors.Is(err, rpctypes.ErrGRPCStopped) || errors.Is(err, rpctypes.ErrStopped) ||
		errors.Is(err, rpctypes.ErrGRPCLeaderChanged) || errors.Is(err, rpctypes.ErrLeaderChanged) ||
		errors.Is(err, rpctypes.ErrGRPCNoLeader) || errors.Is(err, rpctypes.ErrNoLeader) {
		return true
	}
	if s, ok := status.FromError(err); ok && (s.Code() == codes.Unavailable || s.Code() == codes.DeadlineExceeded) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "unhealthy cluster") || strings.Contains(msg, "not enough started members") || strings.Contains(msg, "server stopped")
}

func isLearnerNotReady(err error) bool {
	return errors.Is(err, rpctypes.ErrGRPCLearnerNotReady) || errors.Is(err, rpctypes.ErrMemberLearnerNotReady) ||
		strings.Contains(err.Error(), "not in sync with leader") || isUnhealthyCluster(err)
}

// addLearner adds a learner for peerURL, or finds the one a previous apply
// added, and returns its ID.
func (e *etcd) addLearner(ctx context.Context, peerURL string) (uint64, error) {
	members, err := e.members(ctx)
	if err != nil {
		return 0, err
	}
	for _, m := range members {
		if slices.Contains(m.PeerURLs, peerURL) {
			return m.ID, nil
		}
	}
	var id uint64
	err = e.retry(ctx, "add etcd learner "+peerURL, isUnhealthyCluster, func(cctx context.Context) error {
		cli, err := e.client(nil)
		if err != nil {
			return err
		}
		resp, err := cli.MemberAddAsLearner(cctx, []string{peerURL})
		if err != nil {
			return err
		}
		id = resp.Member.ID
		return nil
	})
	return id, err
}

// promote makes a learner a voter, retrying while it is not yet in sync
// (it takes seconds after the VM boots). A member that already votes is done.
func (e *etcd) promote(ctx context.Context, id uint64) error {
	return e.poll(ctx, fmt.Sprintf("promote etcd learner %x", id), 4*gatePoll, isLearnerNotReady, func(cctx context.Context) error {
		members, err := e.members(cctx)
		if err != nil {
			return err
		}
		for _, m := range members {
			if m.ID == id && !m.IsLearner {
				return nil
			}
		}
		cli, err := e.client(nil)
		if err != nil {
			return err
		}
		_, err = cli.MemberPromote(cctx, id)
		return err
	})
}

// remove removes a member, retrying through etcd's "unhealthy cluster"
// window after a recent membership change. A member already gone is done.
func (e *etcd) remove(ctx context.Context, id uint64) error {
	return e.retry(ctx, fmt.Sprintf("remove etcd member %x", id), isUnhealthyCluster, func(cctx context.Context) error {
		cli, err := e.client(nil)
		if err != nil {
			return err
		}
		_, err = cli.MemberRemove(cctx, id)
		if errors.Is(err, rpctypes.ErrGRPCMemberNotFound) || errors.Is(err, rpctypes.ErrMemberNotFound) ||
			err != nil && strings.Contains(err.Error(), "member not found") {
			return nil
		}
		return err
	})
}

// moveLeader hands leadership from member `from` to member `to`; if from
// no longer leads, there is nothing to do.
func (e *etcd) moveLeader(ctx context.Context, from, to uint64) error {
	return e.retry(ctx, fmt.Sprintf("move etcd leadership from %x to %x", from, to), func(error) bool { return true }, func(cctx context.Context) error {
		id, url, err := e.leader(cctx)
		if err != nil {
			return err
		}
		if id != from {
			return nil
		}
		one, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: e.timeout, TLS: e.tls, Logger: zap.NewNop()})
		if err != nil {
			return err
		}
		defer one.Close()
		_, err = one.MoveLeader(cctx, to)
		return err
	})
}

// started waits until the member whose peer URL is peerURL has started:
// etcd names a member once that member has caught up with the leader and
// published itself, which is also when it begins to serve clients. It asks
// the running members, not the new one, so a VM still booting costs no
// connection attempts (on GCE, a VM that is not up yet drops packets).
// report, when not nil, is told what it waits for each time that changes.
// booted, when not nil, is asked every bootCheckEvery whether the VM's
// boot failed; its error ends the wait.
func (e *etcd) started(ctx context.Context, peerURL string, report func(string), booted func(context.Context) error) error {
	return e.waitBooted(ctx, "wait for the etcd member at "+peerURL+" to start", report, booted, func(cctx context.Context) error { return e.isStarted(cctx, peerURL) })
}

// waitBooted polls check until it passes, telling report what it waits
// for each time that changes, and asks booted (when set) every
// bootCheckEvery whether the VM's boot failed, which ends the wait.
func (e *etcd) waitBooted(ctx context.Context, what string, report func(string), booted, check func(context.Context) error) error {
	last := ""
	lastCheck := time.Now()
	return e.poll(ctx, what, gatePoll, func(err error) bool { return !errors.Is(err, errBootFailed) }, func(cctx context.Context) error {
		if booted != nil && time.Since(lastCheck) >= bootCheckEvery {
			lastCheck = time.Now()
			if err := booted(cctx); err != nil {
				return err
			}
		}
		err := check(cctx)
		if err != nil && report != nil && err.Error() != last {
			last = err.Error()
			report(what + ": " + last)
		}
		return err
	})
}

func (e *etcd) isStarted(ctx context.Context, peerURL string) error {
	members, err := e.members(ctx)
	if err != nil {
		return err
	}
	for _, m := range members {
		if slices.Contains(m.PeerURLs, peerURL) {
			if m.Name == "" || len(m.ClientURLs) == 0 {
				return errors.New("a learner, not started yet (its VM boots)")
			}
			return nil
		}
	}
	return fmt.Errorf("etcd has no member at %s", peerURL)
}

// connected says the client exists: the cluster has an etcd kubeha has
// talked to.
func (e *etcd) connected() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.cli != nil
}
