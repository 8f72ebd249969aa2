package gceretry

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"google.golang.org/api/googleapi"
)

func TestDoRetriesTransientOnly(t *testing.T) {
	calls := 0
	v, err := Do(context.Background(), nil, "get", func() (int, error) {
		calls++
		if calls < 3 {
			return 0, &googleapi.Error{Code: []int{429, 503}[calls-1], Header: http.Header{"Retry-After": []string{"0"}}}
		}
		return 7, nil
	})
	if err != nil || v != 7 || calls != 3 {
		t.Fatalf("v=%d err=%v calls=%d", v, err, calls)
	}
	calls = 0
	_, err = Do(context.Background(), nil, "insert x", func() (int, error) {
		calls++
		return 0, &googleapi.Error{Code: 400, Message: "bad"}
	})
	if err == nil || calls != 1 || !errors.As(err, new(*googleapi.Error)) {
		t.Fatalf("a 400 was retried or lost: %v, %d calls", err, calls)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = Do(ctx, nil, "list", func() (int, error) { return 0, &googleapi.Error{Code: 503} })
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a cancelled retry: %v", err)
	}
	if ok, d := Transient(&googleapi.Error{Code: 429, Header: http.Header{"Retry-After": []string{"3"}}}); !ok || d != 3*time.Second {
		t.Errorf("Retry-After: %v %v", ok, d)
	}
}
