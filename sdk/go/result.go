package ratelimiter

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// CheckRequest is what Check, Peek and Report ask about: Identifier in Namespace, or, for
// several limits at once, Descriptors (and no Identifier).
type CheckRequest struct {
	Namespace   string
	Identifier  string
	Descriptors []Descriptor
	// Hits to charge. Check: 0 means 1 (a request is one hit); Report: charged as given, 0
	// charges nothing; Peek: ignored.
	Hits int
}

// Descriptor is one descriptor's entries in order, e.g.
// Descriptor{{"route", "/cart"}, {"method", "POST"}}.
type Descriptor []Entry

// Entry is one key and value of a descriptor.
type Entry struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Result is the sidecar's decision for a request and, when it was sent as Descriptors, for each
// of them in Results.
type Result struct {
	Allowed bool
	// Limited is false when no limit applies (a namespace without rules, an unlimited or exempt
	// identifier); the fields below are then zero.
	Limited    bool
	Limit      int
	Remaining  int
	ResetAt    time.Time     // when the window resets
	ResetAfter time.Duration // how long until then, in whole seconds
	RetryAfter time.Duration // when refused: how long until a retry can succeed
	Window     time.Duration
	Policy     string // the rule's name, else its descriptor keys joined by '.'
	Results    []Result
}

// wireResult is a result as the REST API writes it (null: no value).
type wireResult struct {
	Allowed    *bool        `json:"allowed"`
	Limit      *int         `json:"limit"`
	Remaining  *int         `json:"remaining"`
	ResetAt    *time.Time   `json:"reset_at"`
	ResetAfter *int         `json:"reset_after_seconds"`
	RetryAfter *int         `json:"retry_after_seconds"`
	Window     *int         `json:"window_seconds"`
	Policy     *string      `json:"policy"`
	Results    []wireResult `json:"results"`
}

func decodeResult(body []byte) (Result, error) {
	var w wireResult
	if err := json.Unmarshal(body, &w); err != nil {
		return Result{}, fmt.Errorf("the answer is not a check result: %w", err)
	}
	return w.result()
}

func (w wireResult) result() (Result, error) {
	if w.Allowed == nil {
		return Result{}, errors.New("the answer is not a check result: no \"allowed\"")
	}
	r := Result{Allowed: *w.Allowed, Limited: w.Limit != nil, Limit: deref(w.Limit),
		Remaining: deref(w.Remaining), ResetAfter: seconds(w.ResetAfter),
		RetryAfter: seconds(w.RetryAfter), Window: seconds(w.Window)}
	if w.ResetAt != nil {
		r.ResetAt = *w.ResetAt
	}
	if w.Policy != nil {
		r.Policy = *w.Policy
	}
	for _, each := range w.Results {
		one, err := each.result()
		if err != nil {
			return Result{}, err
		}
		r.Results = append(r.Results, one)
	}
	return r, nil
}

func deref(n *int) int {
	if n == nil {
		return 0
	}
	return *n
}

func seconds(n *int) time.Duration { return time.Duration(deref(n)) * time.Second }

// checkBody is the JSON body of /v1/check and /v1/report.
type checkBody struct {
	Namespace   string    `json:"namespace"`
	Identifier  string    `json:"identifier,omitempty"`
	Descriptors [][]Entry `json:"descriptors,omitempty"`
	Hits        int       `json:"hits"`
}

// body checks what the client can check itself (the sidecar judges the rest and names the
// field in its 400) and builds the JSON body.
func (req CheckRequest) body(hits int) (checkBody, error) {
	if req.Namespace == "" {
		return checkBody{}, invalidField("namespace", "must not be empty")
	}
	if hits < 0 {
		return checkBody{}, invalidField("hits", fmt.Sprintf("%d is negative; expected 0 or more", hits))
	}
	b := checkBody{Namespace: req.Namespace, Hits: hits}
	switch {
	case len(req.Descriptors) > 0 && req.Identifier != "":
		return checkBody{}, invalidField("descriptors", "send either an identifier or descriptors, not both")
	case len(req.Descriptors) > 0:
		for _, d := range req.Descriptors {
			b.Descriptors = append(b.Descriptors, []Entry(d))
		}
	case req.Identifier == "":
		return checkBody{}, invalidField("identifier", "must not be empty (or send descriptors)")
	default:
		b.Identifier = req.Identifier
	}
	return b, nil
}
