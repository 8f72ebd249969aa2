package executor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kubeha/kubeha/kubeapi"
	"github.com/kubeha/kubeha/planner"
)

// deleteNode deletes a removed master's Node through the API at the static
// IP, as kubeha's admin. The API may be out of reach for a moment (the
// static IP moving between the load balancer and the last master): it is
// asked again until the step's gate runs out. A Node already gone is done.
func (x *executor) deleteNode(ctx context.Context, s *planner.Step) error {
	static, err := x.staticIP(ctx)
	if err != nil {
		return err
	}
	cert, key, err := x.o.PKI.Admin()
	if err != nil {
		return err
	}
	cli, err := kubeapi.ForAdmin(static, x.o.APIPort, x.o.PKI.ClusterCA.CertPEM, cert, key)
	if err != nil {
		return fmt.Errorf("delete-node %s: %w", s.Target, err)
	}
	ctx, cancel := context.WithTimeout(ctx, x.o.Gate)
	defer cancel()
	for {
		err := cli.DeleteNode(ctx, s.Target)
		var refused *kubeapi.StatusError
		if err == nil || errors.As(err, &refused) && refused.Code < 500 {
			return err // done, or refused: asking again changes nothing
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("delete-node %s: %w", s.Target, err)
		case <-time.After(time.Second):
		}
	}
}
