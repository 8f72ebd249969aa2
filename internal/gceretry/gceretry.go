// Package gceretry calls the Compute API the way every part of kubeha must:
// under a client-side rate limit, retrying what GCE says is transient (429,
// 5xx, network errors) with exponential backoff and jitter, honouring
// Retry-After. It never retries an error that says the request was wrong.
package gceretry

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/api/googleapi"
)

// MaxAttempts is how many times a call is tried.
const MaxAttempts = 12

// Transient says an error is worth retrying, and how long GCE asked to wait.
func Transient(err error) (bool, time.Duration) {
	var ge *googleapi.Error
	if errors.As(err, &ge) {
		if ge.Code == http.StatusTooManyRequests || ge.Code >= 500 {
			return true, retryAfter(ge.Header)
		}
		return false, 0
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true, 0
	}
	msg := err.Error()
	return strings.Contains(msg, "connection refused") || strings.Contains(msg, "connection reset") || strings.Contains(msg, "EOF"), 0
}

func retryAfter(h http.Header) time.Duration {
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return time.Until(t)
	}
	return 0
}

// Backoff is exponential with jitter, capped at 10s.
func Backoff(attempt int) time.Duration {
	d := min(200*time.Millisecond<<min(attempt, 6), 10*time.Second)
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}

// Sleep waits d or until ctx is done.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Do runs call under the limiter (nil: none), retrying transient errors.
func Do[T any](ctx context.Context, limiter *rate.Limiter, what string, call func() (T, error)) (T, error) {
	var zero T
	for attempt := 0; ; attempt++ {
		if limiter != nil {
			if err := limiter.Wait(ctx); err != nil {
				return zero, fmt.Errorf("%s: %w", what, err)
			}
		}
		v, err := call()
		if err == nil {
			return v, nil
		}
		retry, after := Transient(err)
		if !retry || attempt >= MaxAttempts-1 {
			return zero, fmt.Errorf("%s: %w", what, err)
		}
		if after <= 0 {
			after = Backoff(attempt)
		}
		if serr := Sleep(ctx, after); serr != nil {
			return zero, fmt.Errorf("%s: gave up retrying (%w) after: %v", what, serr, err)
		}
	}
}
