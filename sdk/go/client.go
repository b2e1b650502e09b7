package ratelimiter

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// maxAnswer bounds what is read of an answer: a check result is a few hundred bytes.
const maxAnswer = 1 << 20

// Client asks one sidecar. It is safe for concurrent use; make one per process and reuse it
// (it keeps connections open).
type Client struct {
	base *url.URL
	cfg  config
}

// New returns a client of the sidecar at endpoint: "host:port" (localhost:8080) or a URL
// (http://ratelimit:8080). Like regexp.MustCompile it panics on an invalid endpoint or option,
// so it suits values known when the program is written; NewClient returns the error instead.
func New(endpoint string, opts ...Option) *Client {
	c, err := NewClient(endpoint, opts...)
	if err != nil {
		panic(err)
	}
	return c
}

// NewClient is New returning an error, naming the bad endpoint or option, instead of panicking.
func NewClient(endpoint string, opts ...Option) (*Client, error) {
	base, err := parseEndpoint(endpoint)
	if err != nil {
		return nil, err
	}
	cfg := config{timeout: DefaultTimeout, retry: DefaultRetry, mode: FailOpen, verifyMode: FailClosed,
		header: http.Header{}}
	for _, opt := range opts {
		if err := opt(&cfg); err != nil {
			return nil, err
		}
	}
	if cfg.http == nil {
		cfg.http = &http.Client{Transport: newTransport()}
	}
	return &Client{base: base, cfg: cfg}, nil
}

// Endpoint is the base URL the client calls.
func (c *Client) Endpoint() string { return c.base.String() }

// CloseIdleConnections closes the kept-alive connections not in use (they are reopened when
// needed); call it when done with a client that is not the process' only one.
func (c *Client) CloseIdleConnections() { c.cfg.http.CloseIdleConnections() }

// FailureMode is the client's answer when the sidecar cannot decide.
func (c *Client) FailureMode() FailureMode { return c.cfg.mode }

// VerifyFailureMode is VerifyKey's answer when the sidecar cannot answer.
func (c *Client) VerifyFailureMode() FailureMode { return c.cfg.verifyMode }

// Allow charges one hit to identifier in namespace and reports whether the request may go
// ahead. Whatever goes wrong, it answers the failure mode (see Check for the error).
func (c *Client) Allow(ctx context.Context, identifier, namespace string) bool {
	res, _ := c.Check(ctx, CheckRequest{Namespace: namespace, Identifier: identifier})
	return res.Allowed
}

// Check charges req.Hits (0 means 1) and returns the decision. On error the Result holds the
// failure mode's answer (Allowed is true with FailOpen), so "if !res.Allowed { refuse }" does
// what was configured whether or not err is nil; err says what went wrong (*RequestError,
// *UnavailableError).
func (c *Client) Check(ctx context.Context, req CheckRequest) (Result, error) {
	hits := req.Hits
	if hits == 0 {
		hits = 1
	}
	return c.post(ctx, "/v1/check", req, hits)
}

// Peek returns where the budget stands without charging anything (req.Hits is ignored).
func (c *Client) Peek(ctx context.Context, req CheckRequest) (Result, error) {
	return c.post(ctx, "/v1/check", req, 0)
}

// Report charges req.Hits known only after the fact (tokens, bytes): they are always counted,
// past the limit too, so later checks are refused until the usage is paid back; the Result
// says where the budget stands.
func (c *Client) Report(ctx context.Context, req CheckRequest) (Result, error) {
	return c.post(ctx, "/v1/report", req, req.Hits)
}

func (c *Client) post(ctx context.Context, path string, req CheckRequest, hits int) (Result, error) {
	body, err := req.body(hits)
	if err != nil {
		return c.failed(err)
	}
	payload, err := json.Marshal(body)
	if err != nil {
		return c.failed(invalidField("", err.Error()))
	}
	status, answer, attempts, err := c.exchange(ctx, http.MethodPost, path, payload, nil)
	if err == nil {
		var res Result
		if res, err = interpret(status, answer); err == nil {
			return res, nil
		}
	}
	var rejected *RequestError
	if errors.As(err, &rejected) {
		return c.failed(rejected)
	}
	return c.failed(&UnavailableError{Attempts: attempts, Err: err})
}

// exchange sends payload (nil: no body) to path, retrying what never reached the sidecar, and
// returns its answer and the tries made; an error when no answer came.
func (c *Client) exchange(ctx context.Context, method, path string, payload []byte, header http.Header) (int, []byte, int, error) {
	for attempt := 1; ; attempt++ {
		status, answer, err := c.attempt(ctx, method, path, payload, header)
		if err == nil {
			return status, answer, attempt, nil
		}
		if !isDialError(err) || attempt >= c.cfg.retry.Attempts || !sleep(ctx, c.cfg.retry.delay(attempt)) {
			return 0, nil, attempt, err
		}
	}
}

// failed is the failure mode's answer, with the error.
func (c *Client) failed(err error) (Result, error) {
	return Result{Allowed: c.cfg.mode == FailOpen}, err
}

// attempt is one request, bounded by the timeout: the answer's status and body, or an error
// when the sidecar could not be reached or its answer could not be read.
func (c *Client) attempt(ctx context.Context, method, path string, payload []byte, header http.Header) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.timeout)
	defer cancel()
	var body io.Reader = http.NoBody
	if payload != nil {
		body = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base.String()+path, body)
	if err != nil {
		return 0, nil, err
	}
	for name, values := range c.cfg.header {
		req.Header[name] = values
	}
	for name, values := range header {
		req.Header[name] = values
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := c.cfg.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return 0, nil, fmt.Errorf("reading the answer: %w", err)
	}
	return resp.StatusCode, answer, nil
}

func interpret(status int, answer []byte) (Result, error) {
	var failure struct {
		Error string  `json:"error"`
		Field *string `json:"field"`
	}
	switch {
	case status == http.StatusOK:
		return decodeResult(answer)
	case status == http.StatusBadRequest || status == http.StatusRequestEntityTooLarge:
		e := &RequestError{Status: status, Message: fmt.Sprintf("HTTP %d from the sidecar", status)}
		if json.Unmarshal(answer, &failure) == nil && failure.Error != "" {
			e.Message = failure.Error
			if failure.Field != nil {
				e.Field = *failure.Field
			}
		}
		return Result{}, e
	default:
		text := string(answer)
		if json.Unmarshal(answer, &failure) == nil && failure.Error != "" {
			text = failure.Error
		}
		if len(text) > 200 {
			text = text[:200]
		}
		return Result{}, fmt.Errorf("HTTP %d from the sidecar: %s", status, text)
	}
}

// isDialError: the connection was never made, so the sidecar never saw the request and a
// retry cannot charge the hits twice. Anything later (a timeout waiting for the answer, a
// reset, an answer) is not retried.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// sleep waits d, or less if ctx ends first; false when it did.
func sleep(ctx context.Context, d time.Duration) bool {
	if ctx.Err() != nil {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
