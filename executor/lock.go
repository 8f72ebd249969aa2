package executor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"go.etcd.io/etcd/client/v3/concurrency"
)

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

// errNoHolder says the lock has no holder record.
var errNoHolder = errors.New("no holder recorded")

// lock is an apply lock held on an etcd lease: it expires by itself if its
// holder dies.
type lock struct {
	session *concurrency.Session
	mutex   *concurrency.Mutex
}

// LockTTL is the lease of the apply lock and of the watchers' election, in
// seconds: it ends by itself 5 s after its holder died (keep-alives go
// every TTL/3).
const LockTTL = 5

// unknownHolderWait is how long an apply waits for a lock whose holder it
// cannot tell: a live holder records itself at once, so a lock without a
// record that long is a dead holder's whose lease etcd ends late.
const unknownHolderWait = 30 * time.Second

func lockKey(cluster string) string { return "/kubeha/lock/" + cluster }

// acquire takes the cluster's lock: at once (wait 0), failing with the
// holder's name, or waiting up to wait for it. A holder that died on this
// machine (same host, boot ID and PID namespace, and no such process) cannot
// come back: its lease is revoked rather than waited out. Any other holder
// of this host name that looks dead (another container, say) is waited out
// (LockTTL): its lease ends by itself if it is dead.
func (e *etcd) acquire(ctx context.Context, cluster string, me Holder, wait time.Duration) (*lock, error) {
	cli, err := e.client(nil)
	if err != nil {
		return nil, err
	}
	me.Boot, me.PIDNS = bootID(), pidNamespace()
	sess, err := concurrency.NewSession(cli, concurrency.WithTTL(LockTTL),
		// The lease lives until release, not until the step that took it.
		concurrency.WithContext(context.WithoutCancel(ctx)))
	if err != nil {
		return nil, fmt.Errorf("take the apply lock of %s: %w", cluster, err)
	}
	m := concurrency.NewMutex(sess, lockKey(cluster))
	err = m.TryLock(ctx)
	if errors.Is(err, concurrency.ErrLocked) {
		h, lease, herr := e.holderLease(ctx, cluster)
		switch {
		case herr != nil:
			// Its holder took the lock and has not recorded itself (it is
			// about to, or it died in between), or its record cannot be
			// read now: a dead holder's lease ends within LockTTL, or
			// later when etcd's leader changes (every lease is renewed) or
			// is loaded, so it is waited out for unknownHolderWait.
			wait = max(wait, unknownHolderWait)
		case processAlive(h.PID):
		case h.samePIDs(me):
			if e.revoke(ctx, lease) == nil {
				err = m.TryLock(ctx)
			}
		case h.Host == me.Host:
			wait = max(wait, (LockTTL+5)*time.Second)
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
	if err != nil {
		return h, 0, fmt.Errorf("read the apply lock's holder: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return h, 0, errNoHolder
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
	if err := l.mutex.Unlock(ctx); err != nil {
		l.abandon() // etcd does not answer: the lease ends by itself
		return
	}
	l.session.Close()
}

// abandon stops renewing the lock's lease without asking etcd: after a
// destroy there is no etcd left to ask.
func (l *lock) abandon() { l.session.Orphan() }
