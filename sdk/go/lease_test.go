package ratelimiter_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	ratelimiter "github.com/viva-ratelimit/viva-ratelimit/sdk/go"
	"github.com/viva-ratelimit/viva-ratelimit/sdk/go/internal/contract"
)

// Client.Lease and WithLease against a real sidecar (the contract's rules: a room has 2 slots,
// an identifier 5): the background renewals, the release on the way out of WithLease (fn
// returning, failing or panicking), a lease lost behind its holder's back, and the failure
// modes. The calls underneath are the contract's (TestContract).
func TestLeases(t *testing.T) {
	dir, err := contract.FindDir()
	if err != nil {
		t.Fatal(err)
	}
	c, err := contract.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	sidecar := contract.StartSidecar(t, c, "memory", 0)
	client := ratelimiter.New(fmt.Sprintf("127.0.0.1:%d", sidecar.HTTPPort), ratelimiter.WithTimeout(10*time.Second))
	ctx := context.Background()
	room := func(t *testing.T) ratelimiter.Descriptor {
		return ratelimiter.Descriptor{{Key: "room", Value: strings.ReplaceAll(t.Name(), "/", "-")}}
	}
	// active is how many leases of the room are held: a lease taken and given back at once.
	active := func(t *testing.T) int {
		t.Helper()
		res, err := client.AcquireLease(ctx, ratelimiter.LeaseRequest{Namespace: "contract_leases",
			Descriptors: []ratelimiter.Descriptor{room(t)}})
		if err != nil || !res.Limited {
			t.Fatalf("AcquireLease = %+v, %v", res, err)
		}
		if res.Allowed {
			if _, err := client.ReleaseLease(ctx, res.LeaseID); err != nil {
				t.Fatal(err)
			}
			return res.Active - 1
		}
		return res.Active
	}

	t.Run("renewed in the background beyond its ttl", func(t *testing.T) {
		// ttl 2 s, renewed every 100 ms: lost only if the machine stalled for 1.9 s.
		lease, err := client.Lease(ctx, "", "contract_leases", ratelimiter.LeaseDescriptors(room(t)),
			ratelimiter.TTL(2*time.Second), ratelimiter.RenewEvery(100*time.Millisecond))
		if err != nil || !lease.Held() || lease.Result().TTL != 2*time.Second {
			t.Fatalf("Lease = %+v, %v", lease, err)
		}
		first := lease.Result().ExpiresAt
		time.Sleep(3 * time.Second) // one and a half times its ttl
		if !lease.Held() || !lease.Result().ExpiresAt.After(first.Add(time.Second)) {
			t.Fatalf("after 3 s: held %v, expires %v (first %v)", lease.Held(), lease.Result().ExpiresAt, first)
		}
		if n := active(t); n != 1 {
			t.Fatalf("%d leases held, want the renewed one", n)
		}
		released, err := lease.Release(ctx)
		if err != nil || !released.Released || released.Active != 0 || lease.Held() {
			t.Fatalf("Release = %+v, %v", released, err)
		}
		if again, err := lease.Release(ctx); err != nil || again.Released {
			t.Fatalf("a second Release sent again: %+v, %v", again, err)
		}
	})

	t.Run("WithLease releases when fn returns, fails or panics", func(t *testing.T) {
		boom := errors.New("boom")
		for _, fn := range []func(context.Context, *ratelimiter.Lease) error{
			func(context.Context, *ratelimiter.Lease) error { return nil },
			func(context.Context, *ratelimiter.Lease) error { return boom },
			func(context.Context, *ratelimiter.Lease) error { panic(boom) },
		} {
			var inside int
			err := func() (err error) {
				defer func() {
					if p := recover(); p != nil {
						err = p.(error)
					}
				}()
				return client.WithLease(ctx, "", "contract_leases", func(ctx context.Context, l *ratelimiter.Lease) error {
					inside = active(t)
					return fn(ctx, l)
				}, ratelimiter.LeaseDescriptors(room(t)))
			}()
			if inside != 1 || active(t) != 0 {
				t.Fatalf("held %d inside, %d after (err %v)", inside, active(t), err)
			}
			if err != nil && !errors.Is(err, boom) {
				t.Fatalf("WithLease = %v", err)
			}
		}
	})

	t.Run("WithLease refuses when every slot is held", func(t *testing.T) {
		for range 2 {
			held, err := client.Lease(ctx, "", "contract_leases", ratelimiter.LeaseDescriptors(room(t)))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _, _ = held.Release(ctx) })
		}
		called := false
		err := client.WithLease(ctx, "", "contract_leases", func(context.Context, *ratelimiter.Lease) error {
			called = true
			return nil
		}, ratelimiter.LeaseDescriptors(room(t)))
		var refused *ratelimiter.LeaseRefusedError
		if called || !errors.As(err, &refused) || !errors.Is(err, ratelimiter.ErrLeaseRefused) ||
			refused.Result.Active != 2 || refused.Result.Limit != 2 || refused.Result.RetryAfter <= 0 {
			t.Fatalf("called %v, err %v", called, err)
		}
		if !strings.HasPrefix(err.Error(), `ratelimiter: lease refused: 2 of 2 held for "per_room"; a slot frees within`) {
			t.Fatalf("message %q", err)
		}
	})

	t.Run("a lease released behind its back is lost", func(t *testing.T) {
		var calls atomic.Int32
		err := client.WithLease(ctx, "", "contract_leases", func(ctx context.Context, l *ratelimiter.Lease) error {
			if _, err := client.ReleaseLease(ctx, l.ID()); err != nil {
				return err
			}
			select {
			case <-ctx.Done(): // cancelled by the loss
			case <-time.After(10 * time.Second):
				return errors.New("the loss did not cancel fn's context")
			}
			if l.Held() {
				return errors.New("a lost lease is held")
			}
			return nil
		}, ratelimiter.LeaseDescriptors(room(t)), ratelimiter.RenewEvery(50*time.Millisecond),
			ratelimiter.OnLost(func(*ratelimiter.Lease) { calls.Add(1) }))
		if err != nil || calls.Load() != 1 {
			t.Fatalf("WithLease = %v, OnLost called %d times", err, calls.Load())
		}
	})

	t.Run("failure modes without the sidecar", func(t *testing.T) {
		closed := fmt.Sprintf("127.0.0.1:%d", contract.FreePort(t))
		once := ratelimiter.WithRetry(ratelimiter.RetryPolicy{Attempts: 1})
		open := ratelimiter.New(closed, once)
		lease, err := open.Lease(ctx, "u", "contract_leases")
		if err != nil || lease.Held() || !errors.Is(lease.Err(), ratelimiter.ErrUnavailable) {
			t.Fatalf("FailOpen: %+v, %v", lease, err)
		}
		if res, err := lease.Release(ctx); err != nil || res.Released {
			t.Fatalf("releasing nothing: %+v, %v", res, err)
		}
		ran := false
		err = ratelimiter.New(closed, once, ratelimiter.WithFailureMode(ratelimiter.FailClosed)).WithLease(ctx, "u", "contract_leases",
			func(context.Context, *ratelimiter.Lease) error { ran = true; return nil })
		if ran || !errors.Is(err, ratelimiter.ErrLeaseRefused) || !errors.Is(err, ratelimiter.ErrUnavailable) {
			t.Fatalf("FailClosed: ran %v, %v", ran, err)
		}
	})
}
