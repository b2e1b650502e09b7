package ratelimiter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

const leasesPath = "/v1/leases"

// LeaseRequest is what AcquireLease asks for: a slot of the concurrency limit of Identifier in
// Namespace or, for several limits at once, one of each of Descriptors (all of them or none).
type LeaseRequest struct {
	Namespace   string
	Identifier  string
	Descriptors []Descriptor
	// TTL is how long the lease holds its slots unless renewed; 0 means the rule's lease_ttl,
	// which is also the most a lease may ask for (a longer one is a *RequestError naming "ttl").
	TTL time.Duration
}

// LeaseResult is the sidecar's answer to an acquire or a renewal and, when the lease was asked
// for Descriptors, its answer for each of them in Results.
type LeaseResult struct {
	// Allowed: the lease holds its slots (a renewal: still holds them; false once the lease
	// is gone, expired or released).
	Allowed bool
	// LeaseID renews and releases the lease; empty when nothing is held: refused, no
	// concurrency limit applies, or the failure mode answered.
	LeaseID string
	// Limited is false when no concurrency limit applies (and when the sidecar could not be
	// asked); Active and Limit are then zero.
	Limited bool
	Active  int // leases held after this call
	Limit   int // the rule's max
	// ExpiresAt (the sidecar's clock) and TTL: until when, and for how long from the call, the
	// lease holds unless renewed; zero when nothing is held.
	ExpiresAt time.Time
	TTL       time.Duration
	// RetryAfter, when refused: the longest wait for a holder's lease to expire (a release
	// frees a slot sooner).
	RetryAfter time.Duration
	Policy     string // the rule's name, else its descriptor keys joined by '.'
	Results    []LeaseResult
}

// ReleaseResult is the sidecar's answer to a release: Released when it freed the lease's slots
// (false when the lease was gone already), and the leases then held of the rule's Limit.
type ReleaseResult struct {
	Released bool
	Limited  bool
	Active   int
	Limit    int
}

// AcquireLease takes a slot of a concurrency limit (a rule with algorithm: concurrency) and
// returns the sidecar's answer: Allowed with a LeaseID, or refused with Active and RetryAfter.
// The lease holds its slot for req.TTL unless renewed (RenewLease) or released (ReleaseLease);
// [Client.Lease] does both for you.
//
// As for Check, err is a *RequestError for a malformed request (the sidecar's 400 too: a TTL
// above the rule's lease_ttl names "ttl"), and an *UnavailableError when the sidecar could not
// answer; the LeaseResult then holds the failure mode's answer (Allowed with FailOpen, holding
// nothing).
func (c *Client) AcquireLease(ctx context.Context, req LeaseRequest) (LeaseResult, error) {
	body, err := req.body()
	if err != nil {
		return LeaseResult{}, err
	}
	payload, err := json.Marshal(body)
	if err != nil {
		return LeaseResult{}, invalidField("", "the request cannot be encoded as JSON")
	}
	return c.leaseCall(ctx, leasesPath, payload)
}

// RenewLease holds the lease ttl from now (0: as long as at its acquire). A lease that is gone
// (it expired, was released, or was never issued) answers Allowed false with a nil error: it
// holds nothing, take a new one. Errors as for AcquireLease.
func (c *Client) RenewLease(ctx context.Context, leaseID string, ttl time.Duration) (LeaseResult, error) {
	path, err := leasePath(leaseID, "/renew")
	if err != nil {
		return LeaseResult{}, err
	}
	payload := []byte("{}")
	if ttl < 0 {
		return LeaseResult{}, invalidField("ttl", fmt.Sprintf("%v is negative; expected a positive duration, or 0 for the acquire's", ttl))
	} else if ttl > 0 {
		payload, _ = json.Marshal(map[string]float64{"ttl": ttl.Seconds()})
	}
	return c.leaseCall(ctx, path, payload)
}

// ReleaseLease frees the lease's slots. A lease that is gone already answers Released false
// with a nil error. When the sidecar cannot be asked, err is an *UnavailableError and the
// lease expires with its TTL.
func (c *Client) ReleaseLease(ctx context.Context, leaseID string) (ReleaseResult, error) {
	path, err := leasePath(leaseID, "")
	if err != nil {
		return ReleaseResult{}, err
	}
	status, answer, attempts, err := c.exchange(ctx, http.MethodDelete, path, nil, nil)
	if err == nil {
		if status == http.StatusNotFound {
			return ReleaseResult{}, nil
		}
		var w struct {
			Released *bool `json:"released"`
			Active   *int  `json:"active"`
			Limit    *int  `json:"limit"`
		}
		if err = answered(status, answer, &w); err == nil && w.Released == nil {
			err = errors.New("the sidecar's answer is not a release")
		}
		if err == nil {
			return ReleaseResult{Released: *w.Released, Limited: w.Limit != nil, Active: deref(w.Active), Limit: deref(w.Limit)}, nil
		}
	}
	var rejected *RequestError
	if errors.As(err, &rejected) {
		return ReleaseResult{}, rejected
	}
	return ReleaseResult{}, &UnavailableError{Attempts: attempts, Err: err}
}

// leaseCall sends an acquire or a renewal and reads its answer; a 404 is a lease that is gone.
func (c *Client) leaseCall(ctx context.Context, path string, payload []byte) (LeaseResult, error) {
	status, answer, attempts, err := c.exchange(ctx, http.MethodPost, path, payload, nil)
	if err == nil {
		if status == http.StatusNotFound {
			return LeaseResult{}, nil
		}
		var w wireLease
		if err = answered(status, answer, &w); err == nil {
			if res, ok := w.result(); ok {
				return res, nil
			}
			err = errors.New("the sidecar's answer is not a lease")
		}
	}
	var rejected *RequestError
	if errors.As(err, &rejected) {
		return LeaseResult{}, rejected
	}
	return LeaseResult{Allowed: c.cfg.mode == FailOpen}, &UnavailableError{Attempts: attempts, Err: err}
}

// answered decodes a 200's JSON into v; a *RequestError for a 400 or 413, an error for any
// other answer (a 503: the sidecar's store is down).
func answered(status int, answer []byte, v any) error {
	if status == http.StatusOK {
		if err := json.Unmarshal(answer, v); err != nil {
			return fmt.Errorf("the sidecar's answer is not JSON: %w", err)
		}
		return nil
	}
	_, err := interpret(status, answer)
	return err
}

func leasePath(leaseID, suffix string) (string, error) {
	if leaseID == "" {
		return "", invalidField("lease_id", "must be the LeaseID of an acquire, not empty")
	}
	return leasesPath + "/" + url.PathEscape(leaseID) + suffix, nil
}

// leaseBody is the JSON body of POST /v1/leases.
type leaseBody struct {
	Namespace   string    `json:"namespace"`
	Identifier  string    `json:"identifier,omitempty"`
	Descriptors [][]Entry `json:"descriptors,omitempty"`
	TTL         float64   `json:"ttl,omitempty"`
}

func (req LeaseRequest) body() (leaseBody, error) {
	check, err := CheckRequest{Namespace: req.Namespace, Identifier: req.Identifier, Descriptors: req.Descriptors}.body(1)
	if err != nil {
		return leaseBody{}, err
	}
	if req.TTL < 0 {
		return leaseBody{}, invalidField("ttl", fmt.Sprintf("%v is negative; expected a positive duration, or 0 for the rule's", req.TTL))
	}
	return leaseBody{Namespace: check.Namespace, Identifier: check.Identifier, Descriptors: check.Descriptors,
		TTL: req.TTL.Seconds()}, nil
}

// wireLease is a lease answer as the REST API writes it (null: no value).
type wireLease struct {
	Allowed    *bool       `json:"allowed"`
	LeaseID    *string     `json:"lease_id"`
	Active     *int        `json:"active"`
	Limit      *int        `json:"limit"`
	ExpiresAt  *time.Time  `json:"expires_at"`
	TTL        *float64    `json:"ttl_seconds"`
	RetryAfter *int        `json:"retry_after_seconds"`
	Policy     *string     `json:"policy"`
	Results    []wireLease `json:"results"`
}

func (w wireLease) result() (LeaseResult, bool) {
	if w.Allowed == nil {
		return LeaseResult{}, false
	}
	r := LeaseResult{Allowed: *w.Allowed, LeaseID: text(w.LeaseID), Limited: w.Limit != nil,
		Active: deref(w.Active), Limit: deref(w.Limit), RetryAfter: seconds(w.RetryAfter), Policy: text(w.Policy)}
	if w.ExpiresAt != nil {
		r.ExpiresAt = *w.ExpiresAt
	}
	if w.TTL != nil {
		r.TTL = time.Duration(*w.TTL * float64(time.Second))
	}
	for _, each := range w.Results {
		one, ok := each.result()
		if !ok {
			return LeaseResult{}, false
		}
		r.Results = append(r.Results, one)
	}
	return r, true
}
