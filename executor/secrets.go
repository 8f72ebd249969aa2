package executor

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"

	iam "google.golang.org/api/iam/v1"
	secretmanager "google.golang.org/api/secretmanager/v1"

	"github.com/kubeha/kubeha/internal/gceretry"
	"github.com/kubeha/kubeha/planner"
	"github.com/kubeha/kubeha/spec"
)

// Secrets and the masters' identity: each master's private keys are a
// version of its own Secret Manager secret, which only the masters'
// service account may read; instance metadata holds certificates only.

// accessorRole may read a secret's versions.
const accessorRole = "roles/secretmanager.secretAccessor"

func (x *executor) secretName(instance string) string {
	return "projects/" + x.project() + "/secrets/" + spec.KeysSecretName(instance)
}

// storeKeys adds a master's private keys as a new version of its secret,
// creating the secret first (readable by the masters' service account
// alone), and returns the version's name for its kubeha-keys metadata.
func (x *executor) storeKeys(ctx context.Context, instance, keys string) (string, error) {
	if x.o.Secrets == nil {
		return "", fmt.Errorf("store the private keys of %s: no Secret Manager client", instance)
	}
	sm := x.o.Secrets.Projects.Secrets
	name := x.secretName(instance)
	_, err := gceretry.Do(ctx, x.gce.limiter, "create secret "+name, func() (*secretmanager.Secret, error) {
		return sm.Create("projects/"+x.project(), &secretmanager.Secret{Replication: &secretmanager.Replication{Automatic: &secretmanager.Automatic{}},
			Labels: map[string]string{spec.LabelCluster: x.cluster(), spec.LabelRole: spec.RoleMaster}}).SecretId(spec.KeysSecretName(instance)).Context(ctx).Do()
	})
	if err != nil && httpCode(err) != http.StatusConflict {
		return "", err
	}
	member := "serviceAccount:" + x.o.Spec.MasterServiceAccount()
	if _, err := gceretry.Do(ctx, x.gce.limiter, "set the IAM policy of "+name, func() (*secretmanager.Policy, error) {
		return sm.SetIamPolicy(name, &secretmanager.SetIamPolicyRequest{Policy: &secretmanager.Policy{
			Bindings: []*secretmanager.Binding{{Role: accessorRole, Members: []string{member}}}}}).Context(ctx).Do()
	}); err != nil {
		return "", err
	}
	v, err := gceretry.Do(ctx, x.gce.limiter, "add a version to "+name, func() (*secretmanager.SecretVersion, error) {
		return sm.AddVersion(name, &secretmanager.AddSecretVersionRequest{Payload: &secretmanager.SecretPayload{
			Data: base64.StdEncoding.EncodeToString([]byte(keys))}}).Context(ctx).Do()
	})
	if err != nil {
		return "", err
	}
	return v.Name, nil
}

// retireKeys disables every enabled version of a master's secret but the
// one it boots from: old keys stop being readable once the master runs on
// new ones.
func (x *executor) retireKeys(ctx context.Context, instance, keep string) error {
	if x.o.Secrets == nil || keep == "" {
		return nil
	}
	sm := x.o.Secrets.Projects.Secrets.Versions
	l, err := gceretry.Do(ctx, x.gce.limiter, "list the versions of "+x.secretName(instance), func() (*secretmanager.ListSecretVersionsResponse, error) {
		return sm.List(x.secretName(instance)).Filter("state:ENABLED").Context(ctx).Do()
	})
	if err != nil {
		return err
	}
	for _, v := range l.Versions {
		if v.Name == keep || v.State != "ENABLED" {
			continue
		}
		if _, err := gceretry.Do(ctx, x.gce.limiter, "disable "+v.Name, func() (*secretmanager.SecretVersion, error) {
			return sm.Disable(v.Name, &secretmanager.DisableSecretVersionRequest{}).Context(ctx).Do()
		}); err != nil {
			return err
		}
	}
	return nil
}

// deleteSecret deletes a master's secret (the master is gone); a secret
// that is gone already is done.
func (x *executor) deleteSecret(ctx context.Context, s *planner.Step) error {
	name := "projects/" + x.project() + "/secrets/" + s.Target
	_, err := gceretry.Do(ctx, x.gce.limiter, what(s), func() (*secretmanager.Empty, error) {
		return x.o.Secrets.Projects.Secrets.Delete(name).Context(ctx).Do()
	})
	if httpCode(err) == http.StatusNotFound {
		return nil
	}
	return err
}

// createServiceAccount creates the service account kubeha manages for the
// masters; one that exists is done.
func (x *executor) createServiceAccount(ctx context.Context, s *planner.Step) error {
	id, _, _ := strings.Cut(s.Target, "@")
	_, err := gceretry.Do(ctx, x.gce.limiter, what(s), func() (*iam.ServiceAccount, error) {
		return x.o.IAM.Projects.ServiceAccounts.Create("projects/"+x.project(), &iam.CreateServiceAccountRequest{AccountId: id,
			ServiceAccount: &iam.ServiceAccount{DisplayName: "kubeha masters of cluster " + x.cluster(),
				Description: "The masters of cluster " + x.cluster() + " run as this account; kubeha deletes it with the cluster."}}).Context(ctx).Do()
	})
	if httpCode(err) == http.StatusConflict {
		return nil
	}
	return err
}

// deleteServiceAccount deletes it with the cluster; gone already is done.
func (x *executor) deleteServiceAccount(ctx context.Context, s *planner.Step) error {
	_, err := gceretry.Do(ctx, x.gce.limiter, what(s), func() (*iam.Empty, error) {
		return x.o.IAM.Projects.ServiceAccounts.Delete("projects/" + x.project() + "/serviceAccounts/" + s.Target).Context(ctx).Do()
	})
	if httpCode(err) == http.StatusNotFound {
		return nil
	}
	return err
}
