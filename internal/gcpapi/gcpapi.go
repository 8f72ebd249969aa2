// Package gcpapi makes kubeha's clients of the Google Cloud APIs it uses:
// Compute Engine, IAM (the masters' service account), Secret Manager
// (their private keys) and Cloud Storage (the snapshot of a restore),
// either of Google's with Application Default Credentials or of kubeha's
// emulator, which serves all four at one URL.
package gcpapi

import (
	"context"
	"fmt"
	"strings"

	compute "google.golang.org/api/compute/v1"
	iam "google.golang.org/api/iam/v1"
	"google.golang.org/api/option"
	secretmanager "google.golang.org/api/secretmanager/v1"
	storage "google.golang.org/api/storage/v1"
)

// Clients are the API clients, and where the masters read their keys and
// a restore's snapshot ("" for Secret Manager's and Cloud Storage's own
// endpoints).
type Clients struct {
	Compute          *compute.Service
	IAM              *iam.Service
	Secrets          *secretmanager.Service
	Storage          *storage.Service
	SecretManagerURL string
	StorageURL       string
}

// Google connects to Google's APIs with Application Default Credentials.
func Google(ctx context.Context) (*Clients, error) {
	c, err := compute.NewService(ctx, option.WithScopes(compute.CloudPlatformScope))
	if err != nil {
		return nil, err
	}
	i, err := iam.NewService(ctx, option.WithScopes(iam.CloudPlatformScope))
	if err != nil {
		return nil, fmt.Errorf("connect to IAM: %w", err)
	}
	s, err := secretmanager.NewService(ctx, option.WithScopes(secretmanager.CloudPlatformScope))
	if err != nil {
		return nil, fmt.Errorf("connect to Secret Manager: %w", err)
	}
	st, err := storage.NewService(ctx, option.WithScopes(storage.DevstorageReadWriteScope))
	if err != nil {
		return nil, fmt.Errorf("connect to Cloud Storage: %w", err)
	}
	return &Clients{Compute: c, IAM: i, Secrets: s, Storage: st}, nil
}

// Emulator connects to kubeha's emulator at base (http://HOST:PORT),
// which asks for no credentials.
func Emulator(ctx context.Context, base string) (*Clients, error) {
	base = strings.TrimRight(base, "/")
	at := func(api string) []option.ClientOption {
		return []option.ClientOption{option.WithEndpoint(base + api), option.WithoutAuthentication()}
	}
	c, err := compute.NewService(ctx, at("/compute/v1/")...)
	if err != nil {
		return nil, err
	}
	i, err := iam.NewService(ctx, at("/iam/")...)
	if err != nil {
		return nil, err
	}
	s, err := secretmanager.NewService(ctx, at("/secretmanager/")...)
	if err != nil {
		return nil, err
	}
	st, err := storage.NewService(ctx, at("/storage/v1/")...)
	if err != nil {
		return nil, err
	}
	return &Clients{Compute: c, IAM: i, Secrets: s, Storage: st, SecretManagerURL: base + "/secretmanager", StorageURL: base}, nil
}
