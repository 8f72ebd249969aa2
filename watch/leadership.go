package watch

import (
	"context"
	"crypto/tls"
	"log/slog"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/kubeha/kubeha/executor"
	"github.com/kubeha/kubeha/internal/strs"
	"github.com/kubeha/kubeha/state"
)

// leadership campaigns, over the cluster's etcd, to be the one watcher of a
// cluster that acts. It keeps campaigning in the background.
type leadership struct {
	cluster string
	tls     *tls.Config
	who     executor.Holder
	log     *slog.Logger

	mu      sync.Mutex
	cli     *clientv3.Client
	session *concurrency.Session
	leader  bool
	cancel  context.CancelFunc
}

func newLeadership(cluster string, tlsCfg *tls.Config, who executor.Holder, log *slog.Logger) *leadership {
	return &leadership{cluster: cluster, tls: tlsCfg, who: who, log: log}
}

// leads starts campaigning if needed and says whether this watcher leads.
func (l *leadership) leads(ctx context.Context, obs *state.Cluster) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	var eps []string
	for _, m := range obs.Etcd.Members {
		if !m.IsLearner {
			eps = append(eps, m.ClientURLs...)
		}
	}
	if l.session != nil {
		select {
		case <-l.session.Done():
			l.log.Warn("watch leadership lost: its lease expired")
			l.stopLocked()
		default:
			// Follow the members: the session's keep-alives must reach the
			// cluster when the masters it knew are replaced.
			if have := l.cli.Endpoints(); len(eps) > 0 && !strs.SameSet(have, eps) {
				l.cli.SetEndpoints(eps...)
			}
			return l.leader
		}
	}
	// AutoSyncInterval keeps the endpoints on the members between
	// reconciles too (an apply replacing every master takes longer than the
	// lease lives).
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, TLS: l.tls, Logger: zap.NewNop(),
		AutoSyncInterval: time.Second, DialOptions: []grpc.DialOption{grpc.WithConnectParams(executor.Reconnect)}})
	if err != nil {
		l.log.Error("watch leadership: connect to etcd", "err", err)
		return false
	}
	sess, err := concurrency.NewSession(cli, concurrency.WithTTL(executor.LockTTL))
	if err != nil {
		cli.Close()
		l.log.Error("watch leadership: session", "err", err)
		return false
	}
	cctx, cancel := context.WithCancel(context.Background())
	l.cli, l.session, l.cancel = cli, sess, cancel
	e := concurrency.NewElection(sess, "/kubeha/watch/"+l.cluster)
	won := make(chan struct{})
	go func() {
		if err := e.Campaign(cctx, l.who.String()); err != nil {
			return
		}
		l.mu.Lock()
		l.leader = true
		l.mu.Unlock()
		l.log.Info("leading the reconciles of this cluster", "cluster", l.cluster)
		close(won)
	}()
	// Wait briefly: a lone watcher wins at once.
	l.mu.Unlock()
	select {
	case <-won:
	case <-time.After(2 * time.Second):
	case <-ctx.Done():
	}
	l.mu.Lock()
	return l.leader
}

func (l *leadership) stopLocked() {
	if l.cancel != nil {
		l.cancel()
	}
	if l.session != nil {
		l.session.Close() // revokes the lease: the standby takes over at once
	}
	if l.cli != nil {
		l.cli.Close()
	}
	l.cli, l.session, l.cancel, l.leader = nil, nil, nil, false
}

func (l *leadership) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopLocked()
}
