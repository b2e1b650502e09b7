package ratelimiter

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// MinRenewEvery is the shortest interval between two renewals of a held lease.
const MinRenewEvery = 50 * time.Millisecond

// ErrLeaseRefused matches every *LeaseRefusedError with errors.Is.
var ErrLeaseRefused = errors.New("ratelimiter: lease refused")

// LeaseRefusedError is [Client.Lease]'s answer when no slot was taken: every one is held (Result
// says how many, and RetryAfter), or the sidecar could not be asked and the failure mode is
// FailClosed (Err is then the *UnavailableError, so errors.Is(err, ErrUnavailable) too).
type LeaseRefusedError struct {
	Result LeaseResult
	Err    error
}

func (e *LeaseRefusedError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("ratelimiter: lease refused: the sidecar could not be asked (%v)", e.Err)
	}
	message := fmt.Sprintf("ratelimiter: lease refused: %d of %d held for %q", e.Result.Active, e.Result.Limit, e.Result.Policy)
	if e.Result.RetryAfter > 0 {
		message += fmt.Sprintf("; a slot frees within %v", e.Result.RetryAfter)
	}
	return message
}

func (e *LeaseRefusedError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrLeaseRefused) true.
func (e *LeaseRefusedError) Is(target error) bool { return target == ErrLeaseRefused }

// LeaseOption adjusts a lease taken by [Client.Lease] or [Client.WithLease].
type LeaseOption func(*leaseConfig)

type leaseConfig struct {
	descriptors []Descriptor
	ttl         time.Duration
	renewEvery  time.Duration
	onLost      func(*Lease)
}

// TTL is how long a lease holds unless renewed: how long a slot stays taken after its holder
// died (default and most: the rule's lease_ttl).
func TTL(d time.Duration) LeaseOption { return func(c *leaseConfig) { c.ttl = d } }

// RenewEvery renews the lease at this interval instead of every third of its TTL.
func RenewEvery(d time.Duration) LeaseOption { return func(c *leaseConfig) { c.renewEvery = d } }

// OnLost is called, from the renewing goroutine, when the lease is lost, before [Lease.Lost] is
// closed.
func OnLost(fn func(*Lease)) LeaseOption { return func(c *leaseConfig) { c.onLost = fn } }

// LeaseDescriptors holds a slot of each of these descriptors (all of them or none) instead of
// the identifier's; pass an empty identifier with it.
func LeaseDescriptors(ds ...Descriptor) LeaseOption {
	return func(c *leaseConfig) { c.descriptors = append(c.descriptors, ds...) }
}

// Lease is a slot of a concurrency limit held by [Client.Lease]: renewed in the background
// every third of its TTL until Release, until it is lost, or until the context given to
// Client.Lease is done (it then expires with its TTL). Its methods are safe for concurrent use.
type Lease struct {
	client     *Client
	renewEvery time.Duration
	onLost     func(*Lease)
	err        error // why nothing is held when FailOpen let the caller through
	lostCh     chan struct{}
	stop       context.CancelFunc

	mu        sync.Mutex
	result    LeaseResult // the acquire's, then the last confirmed renewal's
	confirmed time.Time   // when the sidecar last said that the lease holds
	lost      bool
	released  bool
}

// Lease takes a slot of the concurrency limit of identifier in namespace (a rule with algorithm:
// concurrency) and keeps it renewed in the background while ctx lasts; Release it when done
// (WithLease does both). ctx also bounds the acquire itself.
//
// err is a *LeaseRefusedError (errors.Is(err, ErrLeaseRefused)) when every slot is held, or
// when the sidecar cannot be asked and the failure mode is FailClosed; a *RequestError for a
// malformed request. With FailOpen and the sidecar out of reach, the Lease holds nothing (Held
// false, Err the *UnavailableError) and err is nil: go ahead, as Check would allow. A namespace
// or identifier without a concurrency limit holds nothing too, with no error.
func (c *Client) Lease(ctx context.Context, identifier, namespace string, opts ...LeaseOption) (*Lease, error) {
	var cfg leaseConfig
	for _, opt := range opts {
		opt(&cfg)
	}
	res, err := c.AcquireLease(ctx, LeaseRequest{Namespace: namespace, Identifier: identifier,
		Descriptors: cfg.descriptors, TTL: cfg.ttl})
	var invalid *RequestError
	if errors.As(err, &invalid) {
		return nil, err
	}
	if !res.Allowed {
		return nil, &LeaseRefusedError{Result: res, Err: err}
	}
	l := &Lease{client: c, renewEvery: cfg.renewEvery, onLost: cfg.onLost, err: err,
		lostCh: make(chan struct{}), result: res, confirmed: time.Now(), stop: func() {}}
	if interval := l.interval(); interval > 0 {
		var renewing context.Context
		renewing, l.stop = context.WithCancel(ctx)
		go l.renew(renewing, interval)
	}
	return l, nil
}

// WithLease runs fn while holding a lease (as [Client.Lease] takes it) and releases it when fn
// returns or panics, even if ctx is done by then. fn's context is cancelled when the lease is
// lost. It returns Lease's error without calling fn, else fn's error; a release the sidecar
// could not be asked for is not an error (the lease expires with its TTL).
func (c *Client) WithLease(ctx context.Context, identifier, namespace string, fn func(ctx context.Context, lease *Lease) error, opts ...LeaseOption) error {
	lease, err := c.Lease(ctx, identifier, namespace, opts...)
	if err != nil {
		return err
	}
	held, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-lease.Lost():
			cancel()
		case <-held.Done():
		}
	}()
	defer func() { _, _ = lease.Release(context.WithoutCancel(ctx)) }()
	return fn(held, lease)
}

// ID is the lease's id; empty when nothing is held.
func (l *Lease) ID() string { return l.Result().LeaseID }

// Result is the acquire's answer, then the last renewal's that confirmed the lease.
func (l *Lease) Result() LeaseResult {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.result
}

// Held tells whether the lease holds its slots now: false when nothing was taken (FailOpen
// without the sidecar, no concurrency limit), once it is lost, and after Release.
func (l *Lease) Held() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.result.LeaseID != "" && !l.lost && !l.released
}

// Err is why nothing is held when the failure mode let the caller through (an
// *UnavailableError), else nil.
func (l *Lease) Err() error { return l.err }

// Lost is closed when the lease is lost: the sidecar answered that it is gone (it expired
// while its holder stalled, or someone released it), or, with FailClosed, no renewal got
// through for a whole TTL. Renewals stop then. It is never closed otherwise.
func (l *Lease) Lost() <-chan struct{} { return l.lostCh }

// Renew renews the lease now (the background renewals do so anyway) for as long as at its
// acquire. A lease that is gone answers Allowed false and counts as lost; a lease that holds
// nothing, or was released, answers its last result untouched.
func (l *Lease) Renew(ctx context.Context) (LeaseResult, error) {
	l.mu.Lock()
	id, done := l.result.LeaseID, l.lost || l.released
	l.mu.Unlock()
	if id == "" || done {
		return l.Result(), nil
	}
	res, err := l.client.RenewLease(ctx, id, 0)
	l.take(res, err)
	return res, err
}

// Release stops the renewals and frees the slots. A lease that holds nothing, or is lost or
// released already, is not sent again; err is an *UnavailableError when the sidecar could not
// be asked (the lease then expires with its TTL).
func (l *Lease) Release(ctx context.Context) (ReleaseResult, error) {
	l.stop()
	l.mu.Lock()
	id, skip := l.result.LeaseID, l.lost || l.released
	l.released = true
	l.mu.Unlock()
	if id == "" || skip {
		return ReleaseResult{}, nil
	}
	return l.client.ReleaseLease(ctx, id)
}

// renew is the background renewal, until ctx is done or the lease is lost.
func (l *Lease) renew(ctx context.Context, interval time.Duration) {
	timer := time.NewTimer(interval)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		res, err := l.client.RenewLease(ctx, l.ID(), 0)
		if ctx.Err() != nil { // released meanwhile: this answer is stale
			return
		}
		if !l.take(res, err) {
			return
		}
		timer.Reset(l.interval())
	}
}

// take applies a renewal's answer; false once the lease is lost (stop renewing).
func (l *Lease) take(res LeaseResult, err error) bool {
	l.mu.Lock()
	if l.lost {
		l.mu.Unlock()
		return false
	}
	if err == nil && res.Allowed {
		l.result, l.confirmed = res, time.Now()
		l.mu.Unlock()
		return true
	}
	gone := err == nil // the sidecar said so; an error is an outage, tried again next time
	unconfirmed := l.client.cfg.mode != FailOpen && time.Since(l.confirmed) > l.result.TTL
	if !gone && !unconfirmed {
		l.mu.Unlock()
		return true
	}
	l.lost = true
	l.mu.Unlock()
	if l.onLost != nil {
		l.onLost(l)
	}
	close(l.lostCh) // after OnLost: who waits on Lost sees what it did
	return false
}

// interval is the time between renewals; 0 when nothing is held or its TTL is unknown.
func (l *Lease) interval() time.Duration {
	res := l.Result()
	if res.LeaseID == "" || res.TTL <= 0 {
		return 0
	}
	every := l.renewEvery
	if every <= 0 {
		every = res.TTL / 3
	}
	return max(every, MinRenewEvery)
}
