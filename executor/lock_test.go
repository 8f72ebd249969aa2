package executor

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/kubeha/kubeha/sim"
)

// deadPID is the PID of a process that has exited.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skipf("no true(1) to make a dead process: %v", err)
	}
	return cmd.Process.Pid
}

func TestProcessAlive(t *testing.T) {
	if !processAlive(os.Getpid()) {
		t.Error("this process is not alive")
	}
	if processAlive(deadPID(t)) {
		t.Error("a reaped process is alive")
	}
	// A killed child not yet waited for is a zombie: dead.
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Skipf("no sleep(1): %v", err)
	}
	defer cmd.Wait()
	if !processAlive(cmd.Process.Pid) {
		t.Error("a running child is not alive")
	}
	cmd.Process.Kill()
	deadline := time.Now().Add(5 * time.Second)
	for processAlive(cmd.Process.Pid) {
		if time.Now().After(deadline) {
			t.Fatal("a killed, unreaped child (a zombie) is still alive")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLockOfADeadHolder: a lock left by an apply that died on this machine
// (its boot ID, its process gone) is taken at once; one held by a live
// process, or by a process of another machine, is refused with its name.
func TestLockOfADeadHolder(t *testing.T) {
	if bootID() == "" || pidNamespace() == "" {
		t.Skip("no boot ID or PID namespace on this system")
	}
	env := newEnv(t, sim.Options{}, 1)
	p, obs := env.plan(t)
	if err := Apply(context.Background(), p, Options{Compute: env.src.Compute, IAM: env.src.IAM, Secrets: env.src.Secrets, SecretManagerURL: env.smURL, Spec: env.sp, Observed: obs, PKI: env.pki, BackupDir: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	members := env.srv.Members()
	if len(members) != 1 {
		t.Fatalf("members: %+v", members)
	}
	tlsCfg, _ := env.pki.ClientTLS()
	e := &etcd{tls: tlsCfg, timeout: 5 * time.Second, gate: 10 * time.Second}
	defer e.close()
	cli, err := e.client([]string{"https://" + members[0].IP + ":2379"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	me := Holder{Who: "me", Host: "here", PID: os.Getpid(), Since: time.Now()}

	// lockOn takes the lock on a lease of ttl seconds, as another apply's
	// session would.
	lockOn := func(ttl int64) (*concurrency.Session, clientv3.LeaseID) {
		t.Helper()
		lease, err := cli.Grant(ctx, ttl)
		if err != nil {
			t.Fatal(err)
		}
		sess, err := concurrency.NewSession(cli, concurrency.WithLease(lease.ID))
		if err != nil {
			t.Fatal(err)
		}
		if err := concurrency.NewMutex(sess, lockKey("exe")).TryLock(ctx); err != nil {
			t.Fatal(err)
		}
		return sess, lease.ID
	}
	// hold leaves the lock held by h on a lease that lives a minute, longer
	// than the test waits: only a revocation frees it early.
	hold := func(h Holder) clientv3.LeaseID {
		t.Helper()
		_, lease := lockOn(60)
		data, _ := json.Marshal(h)
		if _, err := cli.Put(ctx, lockKey("exe")+"/holder", string(data), clientv3.WithLease(lease)); err != nil {
			t.Fatal(err)
		}
		return lease
	}

	// An apply killed between taking the lock and recording itself: the
	// lock has no holder, and its lease (LockTTL, not renewed any more)
	// ends by itself: it is waited out, not refused.
	t.Run("no holder recorded", func(t *testing.T) {
		sess, _ := lockOn(LockTTL)
		sess.Orphan() // its holder is gone: nobody renews the lease
		l, err := e.acquire(ctx, "exe", me, 0)
		if err != nil {
			t.Fatalf("a lock whose holder died before recording itself was refused: %v", err)
		}
		l.release()
	})

	// The same when etcd ends the lease late: a leader change renews every
	// lease, and a loaded leader revokes late (the kill test met a lock
	// with no holder for more than 10 s). Here the dead apply's lease is
	// kept alive 12 s more before nobody renews it.
	t.Run("no holder recorded, its lease ending late", func(t *testing.T) {
		sess, _ := lockOn(LockTTL)
		go func() {
			time.Sleep(12 * time.Second)
			sess.Orphan()
		}()
		l, err := e.acquire(ctx, "exe", me, 0)
		if err != nil {
			t.Fatalf("a lock whose holder died before recording itself, its lease ending late, was refused: %v", err)
		}
		l.release()
	})

	for _, tc := range []struct {
		name   string
		holder Holder
		free   bool
	}{
		{"dead here", Holder{Who: "ci", Host: "here", PID: deadPID(t), Boot: bootID(), PIDNS: pidNamespace()}, true},
		{"alive here", Holder{Who: "alice", Host: "here", PID: os.Getpid(), Boot: bootID(), PIDNS: pidNamespace()}, false},
		{"another machine", Holder{Who: "bob", Host: "bastion", PID: deadPID(t), Boot: "0b9c3c47-another-boot"}, false},
		// Another container of this kernel: its PIDs are not ours, so a PID
		// that is free here may be its live apply.
		{"another container", Holder{Who: "carol", Host: "here", PID: deadPID(t), Boot: bootID(), PIDNS: "pid:[1]"}, false},
		{"another host name", Holder{Who: "dave", Host: "bastion", PID: deadPID(t), Boot: bootID(), PIDNS: pidNamespace()}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lease := hold(tc.holder)
			defer cli.Revoke(ctx, lease)
			t0 := time.Now()
			l, err := e.acquire(ctx, "exe", me, 0)
			if tc.free {
				if err != nil {
					t.Fatalf("the lock of a dead holder was not taken: %v", err)
				}
				if d := time.Since(t0); d > LockTTL*time.Second {
					t.Errorf("took %s: the dead holder's lease was waited out, not revoked", d)
				}
				got, _ := e.holder(ctx, "exe")
				if got.Who != "me" || got.Boot != bootID() || got.PIDNS != pidNamespace() {
					t.Errorf("holder after taking the lock: %+v", got)
				}
				l.release()
				return
			}
			if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), tc.holder.Who+" on "+tc.holder.Host) {
				t.Fatalf("want the lock refused naming %s on %s, got %v", tc.holder.Who, tc.holder.Host, err)
			}
			if l != nil {
				l.release()
			}
		})
	}
}
