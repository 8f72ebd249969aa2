package executor

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	compute "google.golang.org/api/compute/v1"
	secretmanager "google.golang.org/api/secretmanager/v1"

	"github.com/kubeha/kubeha/metadata"
	"github.com/kubeha/kubeha/planner"
	"github.com/kubeha/kubeha/sim"
)

// TestKeysAreInSecretManager: a master runs as the cluster's own service
// account, its metadata holds no private key, and its keys are a version
// of its secret, whose IAM policy names that account alone. A renewal adds
// a version and disables the old one once the master runs again. A master
// whose account may not read its keys does not start its etcd, and says
// why in one line.
func TestKeysAreInSecretManager(t *testing.T) {
	e := appliedEnv(t, 1)
	ctx := context.Background()
	project, email := e.sp.Spec.GCE.Project, e.sp.MasterServiceAccount()
	in, err := e.src.Compute.Instances.Get(project, "europe-west1-b", "exe-master").Do()
	if err != nil {
		t.Fatal(err)
	}
	if len(in.ServiceAccounts) != 1 || in.ServiceAccounts[0].Email != email || in.ServiceAccounts[0].Email == sim.DefaultServiceAccount {
		t.Errorf("the master runs as %+v, want %s", in.ServiceAccounts, email)
	}
	version := keysOf(in)
	for _, it := range in.Metadata.Items {
		if it.Value != nil && strings.Contains(*it.Value, "PRIVATE KEY") {
			t.Errorf("metadata item %s holds a private key", it.Key)
		}
	}
	sm := e.src.Secrets.Projects.Secrets
	secret := "projects/" + project + "/secrets/exe-master-keys"
	if !strings.HasPrefix(version, secret+"/versions/") {
		t.Fatalf("kubeha-keys is %q", version)
	}
	policy, err := sm.GetIamPolicy(secret).Do()
	if err != nil || len(policy.Bindings) != 1 || policy.Bindings[0].Role != accessorRole ||
		strings.Join(policy.Bindings[0].Members, ",") != "serviceAccount:"+email {
		t.Fatalf("the secret's policy: %+v %v", policy, err)
	}
	got, err := sm.Versions.Access(version).Do()
	if err != nil || !strings.Contains(decode(t, got), "PRIVATE KEY") {
		t.Fatalf("the version's payload: %v", err)
	}

	// Renewal: a new version; the old one is disabled once the master runs.
	p, obs := e.planRenewal(t)
	if err := Apply(ctx, p, e.options(t, obs)); err != nil {
		t.Fatal(err)
	}
	in, _ = e.src.Compute.Instances.Get(project, "europe-west1-b", "exe-master").Do()
	renewed := keysOf(in)
	l, err := sm.Versions.List(secret).Do()
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]string{}
	for _, v := range l.Versions {
		states[v.Name] = v.State
	}
	if renewed == version || states[renewed] != "ENABLED" || states[version] != "DISABLED" {
		t.Errorf("after the renewal: boots from %s, versions %v", renewed, states)
	}

	// Its account loses access: restarted, the master's etcd does not start.
	if _, err := sm.SetIamPolicy(secret, &secretmanager.SetIamPolicyRequest{Policy: &secretmanager.Policy{}}).Do(); err != nil {
		t.Fatal(err)
	}
	wait := func(op *compute.Operation, err error) {
		t.Helper()
		for err == nil && op.Status != "DONE" {
			op, err = e.src.Compute.ZoneOperations.Wait(project, "europe-west1-b", op.Name).Do()
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	wait(e.src.Compute.Instances.Stop(project, "europe-west1-b", "exe-master").Do())
	wait(e.src.Compute.Instances.Start(project, "europe-west1-b", "exe-master").Do())
	var status sim.MemberStatus
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range e.srv.Members() {
			if strings.HasSuffix(m.Instance, "/exe-master") {
				status = m
			}
		}
		if status.State == "failed" {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	want := "the service account " + email + " may not read " + renewed
	if status.State != "failed" || !strings.Contains(status.Error, want) || !strings.Contains(status.Error, "grant it roles/secretmanager.secretAccessor") || strings.Contains(status.Error, "\n") {
		t.Errorf("member without access to its keys: %+v\nwant one line with %q", status, want)
	}
}

func decode(t *testing.T, r *secretmanager.AccessSecretVersionResponse) string {
	t.Helper()
	var tls metadata.TLS
	if err := tls.AddKeys(mustB64(t, r.Payload.Data)); err != nil {
		t.Fatal(err)
	}
	return tls.PeerKey
}

func mustB64(t *testing.T, s string) string {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestRenewalMovesAMasterToItsAccount: a master of an earlier kubeha runs
// as the Compute Engine default account; its renewal moves it to the
// masters' own account while it is stopped, and it comes back healthy on
// keys read from Secret Manager.
func TestRenewalMovesAMasterToItsAccount(t *testing.T) {
	e := appliedEnv(t, 1)
	ctx := context.Background()
	c, project, zone := e.src.Compute, e.sp.Spec.GCE.Project, "europe-west1-b"
	wait := func(op *compute.Operation, err error) {
		t.Helper()
		for err == nil && op.Status != "DONE" {
			op, err = c.ZoneOperations.Wait(project, zone, op.Name).Do()
		}
		if err == nil && op.Error != nil {
			err = fmt.Errorf("%s", op.Error.Errors[0].Message)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	// As an earlier kubeha left it: on the default account (which may not
	// read the keys; its member keeps running from before).
	wait(c.Instances.Stop(project, zone, "exe-master").Do())
	wait(c.Instances.SetServiceAccount(project, zone, "exe-master", &compute.InstancesSetServiceAccountRequest{Email: "default"}).Do())
	if _, err := e.src.Secrets.Projects.Secrets.SetIamPolicy("projects/"+project+"/secrets/exe-master-keys", &secretmanager.SetIamPolicyRequest{
		Policy: &secretmanager.Policy{Bindings: []*secretmanager.Binding{{Role: accessorRole, Members: []string{"serviceAccount:" + sim.DefaultServiceAccount}}}}}).Do(); err != nil {
		t.Fatal(err)
	}
	wait(c.Instances.Start(project, zone, "exe-master").Do())
	p, obs := e.planRenewal(t)
	if err := Apply(ctx, p, e.options(t, obs)); err != nil {
		t.Fatal(err)
	}
	in, _ := c.Instances.Get(project, zone, "exe-master").Do()
	if len(in.ServiceAccounts) != 1 || in.ServiceAccounts[0].Email != e.sp.MasterServiceAccount() {
		t.Errorf("after its renewal the master runs as %+v", in.ServiceAccounts)
	}
	if again, _ := e.plan(t); !again.NoChanges {
		t.Errorf("not converged:\n%s", planner.Format(again))
	}
}
