package ratelimiter

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"
)

// DefaultTimeout bounds one attempt: a rate-limit check must never hold a request for long.
const DefaultTimeout = 500 * time.Millisecond

// FailureMode says what the client answers when the sidecar cannot decide.
type FailureMode int

const (
	// FailOpen allows: rate limiting is protection, not a gate (the default).
	FailOpen FailureMode = iota
	// FailClosed refuses (a middleware answers 503).
	FailClosed
)

func (m FailureMode) String() string {
	if m == FailClosed {
		return "closed"
	}
	return "open"
}

// RetryPolicy governs the retries of a call that could not reach the sidecar. Attempts counts
// every try (1: no retry). The delay before retry n is drawn uniformly from
// [0, min(MaxBackoff, Backoff·2ⁿ⁻¹)] (full jitter, so that many clients do not retry in step).
type RetryPolicy struct {
	Attempts   int
	Backoff    time.Duration
	MaxBackoff time.Duration
}

// DefaultRetry is three tries, 50 ms apart at first, at most a second.
var DefaultRetry = RetryPolicy{Attempts: 3, Backoff: 50 * time.Millisecond, MaxBackoff: time.Second}

// delay is the pause before retry n (1 for the first retry).
func (p RetryPolicy) delay(n int) time.Duration {
	ceiling := p.Backoff << (n - 1)
	if ceiling > p.MaxBackoff || ceiling <= 0 { // <= 0: the shift overflowed
		ceiling = p.MaxBackoff
	}
	if ceiling <= 0 {
		return 0
	}
	return rand.N(ceiling + 1)
}

func (p RetryPolicy) validate() error {
	if p.Attempts < 1 {
		return fmt.Errorf("ratelimiter: RetryPolicy.Attempts is %d; expected at least 1", p.Attempts)
	}
	if p.Backoff < 0 || p.MaxBackoff < 0 {
		return fmt.Errorf("ratelimiter: RetryPolicy backoffs must not be negative (Backoff %v, MaxBackoff %v)",
			p.Backoff, p.MaxBackoff)
	}
	return nil
}

type config struct {
	timeout    time.Duration
	retry      RetryPolicy
	mode       FailureMode
	verifyMode FailureMode
	rootKey    *rootKey
	http       *http.Client
	header     http.Header
}

// rootKey is held by pointer so that printing a Client (%v, %+v) shows an address, not it.
type rootKey struct{ value string }

// Option configures a Client.
type Option func(*config) error

// WithTimeout bounds each attempt (default [DefaultTimeout]); the caller's context bounds the
// whole call, retries included.
func WithTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("ratelimiter: WithTimeout(%v); expected a positive duration", d)
		}
		c.timeout = d
		return nil
	}
}

// WithRetry sets the retries of calls that could not reach the sidecar (default [DefaultRetry]).
func WithRetry(p RetryPolicy) Option {
	return func(c *config) error {
		if err := p.validate(); err != nil {
			return err
		}
		c.retry = p
		return nil
	}
}

// WithFailureMode sets the answer when the sidecar cannot decide (default [FailOpen]).
func WithFailureMode(m FailureMode) Option {
	return func(c *config) error {
		if m != FailOpen && m != FailClosed {
			return fmt.Errorf("ratelimiter: WithFailureMode(%d); expected FailOpen or FailClosed", int(m))
		}
		c.mode = m
		return nil
	}
}

// WithRootKey sets the root key (full mode, scope keys:verify) that VerifyKey sends; only
// VerifyKey needs one, and only VerifyKey sends it.
func WithRootKey(key string) Option {
	return func(c *config) error {
		if strings.TrimSpace(key) == "" {
			return fmt.Errorf("ratelimiter: WithRootKey with an empty key")
		}
		c.rootKey = &rootKey{value: key}
		return nil
	}
}

// WithVerifyFailureMode sets VerifyKey's answer when the sidecar cannot answer (default
// [FailClosed]: a key that cannot be verified is not valid).
func WithVerifyFailureMode(m FailureMode) Option {
	return func(c *config) error {
		if m != FailOpen && m != FailClosed {
			return fmt.Errorf("ratelimiter: WithVerifyFailureMode(%d); expected FailOpen or FailClosed", int(m))
		}
		c.verifyMode = m
		return nil
	}
}

// WithHTTPClient sends the calls through hc instead of the client's own keep-alive transport.
// Its Timeout, if any, applies on top of WithTimeout; dialling "localhost" is then up to hc
// (the own transport tries 127.0.0.1, then ::1).
func WithHTTPClient(hc *http.Client) Option {
	return func(c *config) error {
		if hc == nil {
			return fmt.Errorf("ratelimiter: WithHTTPClient(nil); expected an *http.Client")
		}
		c.http = hc
		return nil
	}
}

// WithHeader adds a header to every call (for a proxy in front of the sidecar, for instance).
func WithHeader(name, value string) Option {
	return func(c *config) error {
		if name == "" {
			return fmt.Errorf("ratelimiter: WithHeader with an empty name")
		}
		c.header.Add(name, value)
		return nil
	}
}
