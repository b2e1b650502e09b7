package contract

import (
	"context"
	"errors"
	"time"

	ratelimiter "github.com/viva-ratelimit/viva-ratelimit/sdk/go"
)

var leaseCalls = map[string]bool{"acquire_lease": true, "renew_lease": true, "release_lease": true}

// leaseCall runs an acquire_lease, renew_lease or release_lease step and describes its outcome
// in the contract's names.
func leaseCall(client *ratelimiter.Client, s Step, started time.Time) map[string]any {
	ctx := context.Background()
	var ttl time.Duration
	if s.TTLMs != nil {
		ttl = millis(*s.TTLMs)
	}
	out := map[string]any{}
	var err error
	switch s.Call {
	case "acquire_lease":
		req := ratelimiter.LeaseRequest{Namespace: deref(s.Namespace), Identifier: deref(s.Identifier),
			Descriptors: descriptors(s.Descriptors), TTL: ttl}
		var res ratelimiter.LeaseResult
		res, err = client.AcquireLease(ctx, req)
		out["lease"] = leaseView(res, started, true)
	case "renew_lease":
		var res ratelimiter.LeaseResult
		res, err = client.RenewLease(ctx, deref(s.LeaseID), ttl)
		out["lease"] = leaseView(res, started, true)
	default:
		var res ratelimiter.ReleaseResult
		res, err = client.ReleaseLease(ctx, deref(s.LeaseID))
		out["released"] = map[string]any{"released": res.Released, "active": nil, "limit": nil}
		if res.Limited {
			out["released"] = map[string]any{"released": res.Released, "active": res.Active, "limit": res.Limit}
		}
	}
	var invalid *ratelimiter.RequestError
	var unavailable *ratelimiter.UnavailableError
	switch {
	case errors.As(err, &invalid):
		return map[string]any{"error": map[string]any{"kind": "invalid_request", "field": invalid.Field}}
	case errors.As(err, &unavailable):
		out["unavailable"] = map[string]any{"attempts": unavailable.Attempts}
	case err != nil:
		out["error"] = map[string]any{"kind": "unexpected", "message": err.Error()}
	}
	return out
}

// leaseView is a lease answer under the contract's names; whole: the lease as a whole (with its
// id and results), else one descriptor's answer.
func leaseView(r ratelimiter.LeaseResult, started time.Time, whole bool) map[string]any {
	view := map[string]any{"allowed": r.Allowed, "active": nil, "limit": nil, "expires_at": nil,
		"ttl_seconds": nil, "retry_after_seconds": nil, "policy": nil}
	if r.Limited {
		view["active"], view["limit"], view["policy"] = r.Active, r.Limit, r.Policy
	}
	if !r.ExpiresAt.IsZero() {
		view["expires_at"] = secondsFrom(r.ExpiresAt, started)
	}
	if r.TTL > 0 {
		view["ttl_seconds"] = r.TTL.Seconds()
	}
	if r.RetryAfter > 0 {
		view["retry_after_seconds"] = int(r.RetryAfter / time.Second)
	}
	if whole {
		view["lease_id"] = nil
		if r.LeaseID != "" {
			view["lease_id"] = r.LeaseID
		}
		results := []any{}
		for _, each := range r.Results {
			results = append(results, leaseView(each, started, false))
		}
		view["results"] = results
	}
	return view
}

func descriptors(pairs [][][2]string) []ratelimiter.Descriptor {
	var out []ratelimiter.Descriptor
	for _, d := range pairs {
		var descriptor ratelimiter.Descriptor
		for _, pair := range d {
			descriptor = append(descriptor, ratelimiter.Entry{Key: pair[0], Value: pair[1]})
		}
		out = append(out, descriptor)
	}
	return out
}
