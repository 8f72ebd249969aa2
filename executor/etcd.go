package executor

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// reconnect is how the client reconnects to a member it could not reach.
// gRPC's default waits 1s before the first retry and grows to 2 minutes;
// kubeha watches members come up (the bootstrap master, a restarted one),
// and every call waits for a connection, so a member that starts listening
// should be reached within a poll or two, not a backoff later.
var reconnect = grpc.ConnectParams{
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
	if sameSet(cli.Endpoints(), endpoints) {
		return
	}
	e.eps.Lock()
	defer e.eps.Unlock()
	cli.SetEndpoints(endpoints...)
}

// sameSet says a and b hold the same strings, in any order.
func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
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
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(reconnect)}})
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

// leader returns the leader's ID and client URL.
func (e *etcd) leader(ctx context.Context) (uint64, string, error) {
	members, err := e.members(ctx)
	if err != nil {
		return 0, "", err
	}
	cli, _ := e.client(nil)
	for _, m := range members {
		if len(m.ClientURLs) == 0 {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, e.timeout)
		st, err := e.status(cctx, cli, m.ClientURLs[0])
		cancel()
		if err != nil || st.Leader == 0 {
			continue
		}
		for _, l := range members {
			if l.ID == st.Leader && len(l.ClientURLs) > 0 {
				return l.ID, l.ClientURLs[0], nil
			}
		}
	}
	return 0, "", errors.New("no etcd member knows a leader")
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
func (e *etcd) started(ctx context.Context, peerURL string) error {
	return e.poll(ctx, "wait for the etcd member at "+peerURL+" to start", gatePoll, func(error) bool { return true }, func(cctx context.Context) error {
		members, err := e.members(cctx)
		if err != nil {
			return err
		}
		for _, m := range members {
			if slices.Contains(m.PeerURLs, peerURL) {
				if m.Name == "" || len(m.ClientURLs) == 0 {
					return errors.New("not started yet")
				}
				return nil
			}
		}
		return fmt.Errorf("etcd has no member at %s", peerURL)
	})
}

// healthy is the health gate: it waits until at least want voters answer
// and follow a leader, and no learner is left unstarted.
func (e *etcd) healthy(ctx context.Context, want int) error {
	var last string
	err := e.poll(ctx, fmt.Sprintf("wait for %d healthy etcd voters", want), gatePoll, func(error) bool { return true }, func(cctx context.Context) error {
		members, err := e.members(cctx)
		if err != nil {
			return err
		}
		cli, _ := e.client(nil)
		healthy := 0
		var down []string
		for _, m := range members {
			if m.IsLearner || len(m.ClientURLs) == 0 {
				continue
			}
			st, err := e.status(cctx, cli, m.ClientURLs[0])
			if err == nil && st.Leader != 0 && len(st.Errors) == 0 {
				healthy++
			} else {
				down = append(down, firstNonEmpty(m.Name, fmt.Sprintf("%x", m.ID)))
			}
		}
		if healthy < want {
			last = fmt.Sprintf("%d healthy (%s down)", healthy, strings.Join(down, ","))
			return errors.New(last)
		}
		return nil
	})
	return err
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// snapshot saves an etcd snapshot to dir and keeps the newest keep files.
func (e *etcd) snapshot(ctx context.Context, dir, name string, keep int) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create backup directory: %w", err)
	}
	cli, err := e.client(nil)
	if err != nil {
		return "", err
	}
	cctx, cancel := context.WithTimeout(ctx, 5*e.gate)
	defer cancel()
	rc, err := cli.Snapshot(cctx)
	if err != nil {
		return "", fmt.Errorf("take etcd snapshot: %w", err)
	}
	defer rc.Close()
	path := filepath.Join(dir, name)
	tmp, err := os.CreateTemp(dir, ".snapshot-*")
	if err != nil {
		return "", fmt.Errorf("save etcd snapshot: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return "", fmt.Errorf("save etcd snapshot: %w", err)
	}
	n, err := io.Copy(tmp, rc)
	if err == nil && n == 0 {
		err = errors.New("empty snapshot")
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("save etcd snapshot: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("save etcd snapshot: %w", err)
	}
	prune(dir, keep)
	return path, nil
}

// prune keeps the newest keep snapshots.
func prune(dir string, keep int) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	var snaps []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".db") {
			snaps = append(snaps, e.Name())
		}
	}
	sort.Strings(snaps) // names start with a UTC timestamp
	for len(snaps) > keep {
		os.Remove(filepath.Join(dir, snaps[0]))
		snaps = snaps[1:]
	}
}

// Holder says who holds a cluster's apply lock.
type Holder struct {
	Who   string    `json:"who"`
	Host  string    `json:"host"`
	PID   int       `json:"pid"`
	Since time.Time `json:"since"`
	// Boot is the kernel's boot ID of the holder's machine and PIDNS its
	// PID namespace (Linux): when both are this process's, the holder's PID
	// means the same process here, so a dead PID is a dead holder.
	// Containers share a kernel (and its boot ID) but not PIDs.
	Boot  string `json:"boot,omitempty"`
	PIDNS string `json:"pidNamespace,omitempty"`
}

// bootID is this machine's boot ID, unique per boot ("" off Linux).
func bootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// pidNamespace names this process's PID namespace ("" off Linux).
func pidNamespace() string {
	ns, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		return ""
	}
	return ns
}

// samePIDs says h's PID is a PID of this process's PID space.
func (h Holder) samePIDs(me Holder) bool {
	return h.Boot != "" && h.PIDNS != "" && h.Boot == me.Boot && h.PIDNS == me.PIDNS && h.Host == me.Host
}

func (h Holder) String() string {
	return fmt.Sprintf("%s on %s (pid %d) since %s", h.Who, h.Host, h.PID, h.Since.UTC().Format(time.RFC3339))
}

// ErrLocked says another apply holds the cluster's lock.
var ErrLocked = errors.New("locked")

// lock is an apply lock held on an etcd lease: it expires by itself if its
// holder dies.
type lock struct {
	session *concurrency.Session
	mutex   *concurrency.Mutex
}

const lockTTL = 5 // seconds; keep-alives go every TTL/3

func lockKey(cluster string) string { return "/kubeha/lock/" + cluster }

// acquire takes the cluster's lock: at once (wait 0), failing with the
// holder's name, or waiting up to wait for it. A holder that died on this
// machine (same host, boot ID and PID namespace, and no such process) cannot
// come back: its lease is revoked rather than waited out. Any other holder
// of this host name that looks dead (another container, say) is waited out
// (lockTTL): its lease ends by itself if it is dead.
func (e *etcd) acquire(ctx context.Context, cluster string, me Holder, wait time.Duration) (*lock, error) {
	cli, err := e.client(nil)
	if err != nil {
		return nil, err
	}
	me.Boot, me.PIDNS = bootID(), pidNamespace()
	sess, err := concurrency.NewSession(cli, concurrency.WithTTL(lockTTL), concurrency.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("take the apply lock of %s: %w", cluster, err)
	}
	m := concurrency.NewMutex(sess, lockKey(cluster))
	err = m.TryLock(ctx)
	if errors.Is(err, concurrency.ErrLocked) {
		if h, lease, herr := e.holderLease(ctx, cluster); herr == nil && !processAlive(h.PID) {
			switch {
			case h.samePIDs(me):
				if e.revoke(ctx, lease) == nil {
					err = m.TryLock(ctx)
				}
			case h.Host == me.Host:
				wait = max(wait, (lockTTL+5)*time.Second)
			}
		}
	}
	if errors.Is(err, concurrency.ErrLocked) {
		if wait > 0 {
			wctx, cancel := context.WithTimeout(ctx, wait)
			err = m.Lock(wctx)
			cancel()
		}
	}
	if err != nil {
		sess.Close()
		holder := "another kubeha"
		if h, herr := e.holder(ctx, cluster); herr == nil {
			holder = h.String()
		}
		if errors.Is(err, concurrency.ErrLocked) || errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("%w: cluster %s is being changed by %s: wait for it, or run apply with --lock-timeout to wait", ErrLocked, cluster, holder)
		}
		return nil, fmt.Errorf("take the apply lock of %s: %w", cluster, err)
	}
	data, _ := json.Marshal(me)
	cctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	if _, err := cli.Put(cctx, lockKey(cluster)+"/holder", string(data), clientv3.WithLease(sess.Lease())); err != nil {
		m.Unlock(context.Background())
		sess.Close()
		return nil, fmt.Errorf("record the apply lock's holder: %w", err)
	}
	return &lock{session: sess, mutex: m}, nil
}

// processAlive says a process of this machine exists. A zombie (killed,
// not yet reaped by its parent) is dead: it holds nothing any more.
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true // no /proc: the signal check is all there is
	}
	// pid (comm) state ...: comm may hold spaces and parentheses.
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
		return false
	}
	return true
}

func (e *etcd) holder(ctx context.Context, cluster string) (Holder, error) {
	h, _, err := e.holderLease(ctx, cluster)
	return h, err
}

// holderLease reads the lock's holder and the lease its record (and its
// lock) lives on.
func (e *etcd) holderLease(ctx context.Context, cluster string) (Holder, clientv3.LeaseID, error) {
	var h Holder
	cli, err := e.client(nil)
	if err != nil {
		return h, 0, err
	}
	cctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	resp, err := cli.Get(cctx, lockKey(cluster)+"/holder")
	if err != nil || len(resp.Kvs) == 0 {
		return h, 0, errors.New("no holder recorded")
	}
	return h, clientv3.LeaseID(resp.Kvs[0].Lease), json.Unmarshal(resp.Kvs[0].Value, &h)
}

// revoke ends a dead holder's lease, which deletes its lock and record.
func (e *etcd) revoke(ctx context.Context, lease clientv3.LeaseID) error {
	if lease == 0 {
		return errors.New("the holder's record has no lease")
	}
	cli, err := e.client(nil)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	_, err = cli.Revoke(cctx, lease)
	return err
}

func (l *lock) release() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	l.mutex.Unlock(ctx)
	l.session.Close()
}
