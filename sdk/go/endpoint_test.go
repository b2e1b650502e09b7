package ratelimiter

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestParseEndpoint(t *testing.T) {
	for endpoint, want := range map[string]string{
		"localhost:8080":              "http://localhost:8080",
		"127.0.0.1:9000":              "http://127.0.0.1:9000",
		"[::1]:8080":                  "http://[::1]:8080",
		"ratelimit":                   "http://ratelimit:8080",
		":8080":                       "http://localhost:8080",
		"http://localhost:8080/":      "http://localhost:8080",
		"https://rl.internal/prefix/": "https://rl.internal/prefix",
		" http://127.0.0.1:1 ":        "http://127.0.0.1:1",
	} {
		u, err := parseEndpoint(endpoint)
		if err != nil || u.String() != want {
			t.Errorf("parseEndpoint(%q) = %v, %v; want %s", endpoint, u, err, want)
		}
	}
	for endpoint, complaint := range map[string]string{
		"":                     "empty endpoint",
		"ftp://host:21":        `scheme "ftp"`,
		"http://":              "has no host",
		"http://h:1/?x=1":      "query",
		"localhost:8080:extra": "endpoint",
	} {
		_, err := parseEndpoint(endpoint)
		if err == nil || !strings.Contains(err.Error(), complaint) {
			t.Errorf("parseEndpoint(%q) error %v; want one mentioning %q", endpoint, err, complaint)
		}
	}
}

func TestNewPanicsWhereNewClientReturnsTheError(t *testing.T) {
	if _, err := NewClient("ftp://x"); err == nil {
		t.Fatal("NewClient accepted ftp://x")
	}
	for _, opt := range []Option{WithTimeout(0), WithRetry(RetryPolicy{Attempts: 0}),
		WithRetry(RetryPolicy{Attempts: 1, Backoff: -1}), WithFailureMode(FailureMode(7)),
		WithHTTPClient(nil), WithHeader("", "x")} {
		if _, err := NewClient("localhost:8080", opt); err == nil {
			t.Error("an invalid option was accepted")
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("New did not panic on an invalid endpoint")
		}
	}()
	New("")
}

// A sidecar that listens on ::1 only is reached as "localhost" although this machine's
// resolver may only know 127.0.0.1 (and one on 127.0.0.1 only, whatever comes first: see the
// contract's endpoint_forms).
func TestLocalhostFallsBackToIPv6Loopback(t *testing.T) {
	l, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	server := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"allowed": false, "limit": 1, "remaining": 0, "retry_after_seconds": 7}`))
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = server.Serve(l) }()
	defer server.Close()
	port := l.Addr().(*net.TCPAddr).Port
	client := New("localhost:"+itoa(port), WithRetry(RetryPolicy{Attempts: 1}), WithTimeout(5*time.Second))
	for range 2 { // the second call starts with ::1, the address that answered
		res, err := client.Check(context.Background(), CheckRequest{Namespace: "n", Identifier: "i"})
		if err != nil || res.Allowed || res.RetryAfter != 7*time.Second {
			t.Fatalf("Check through localhost = %+v, %v", res, err)
		}
	}
}

func TestBackoffGrowsWithJitterUpToTheCap(t *testing.T) {
	p := RetryPolicy{Attempts: 6, Backoff: 100 * time.Millisecond, MaxBackoff: 300 * time.Millisecond}
	caps := []time.Duration{100, 200, 300, 300, 300}
	for n, ceiling := range caps {
		for range 50 {
			if d := p.delay(n + 1); d < 0 || d > ceiling*time.Millisecond {
				t.Fatalf("delay(%d) = %v; want within [0, %vms]", n+1, d, ceiling)
			}
		}
	}
	if d := (RetryPolicy{Attempts: 99, Backoff: time.Second, MaxBackoff: time.Minute}).delay(90); d > time.Minute {
		t.Fatalf("an overflowing shift gave %v", d)
	}
}

func TestTheCallersContextBoundsTheRetries(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close() // nothing listens there now: every try is refused
	client := New("127.0.0.1:"+itoa(port), WithFailureMode(FailClosed),
		WithRetry(RetryPolicy{Attempts: 50, Backoff: time.Second, MaxBackoff: time.Second}))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	started := time.Now()
	res, err := client.Check(ctx, CheckRequest{Namespace: "n", Identifier: "i"})
	var unavailable *UnavailableError
	if res.Allowed || !errors.As(err, &unavailable) || unavailable.Attempts >= 50 {
		t.Fatalf("Check = %+v, %v", res, err)
	}
	if elapsed := time.Since(started); elapsed > 3*time.Second {
		t.Fatalf("the call outlived its context by far: %v", elapsed)
	}
}

func TestHeadersEscapePolicyNames(t *testing.T) {
	res := Result{Allowed: true, Limited: true, Limit: 5, Remaining: 4, Window: time.Hour,
		ResetAfter: 9 * time.Second, Policy: `we"ird\näme`}
	h := res.Headers(AllHeaders)
	if got := h.Get("RateLimit-Policy"); got != `"we\"ird\\n_me";q=5;w=3600` {
		t.Errorf("RateLimit-Policy = %s", got)
	}
	if got := h.Get("RateLimit"); got != `"we\"ird\\n_me";r=4;t=9` {
		t.Errorf("RateLimit = %s", got)
	}
	if h := res.Headers(HeadersX); h.Get("RateLimit") != "" || h.Get("X-RateLimit-Reset") != "9" {
		t.Errorf("HeadersX alone = %v", h)
	}
	if h := (Result{Allowed: true}).Headers(AllHeaders); len(h) != 0 {
		t.Errorf("no limit, yet headers %v", h)
	}
}

func TestAnswersThatAreNotResultsAreFailures(t *testing.T) {
	for status, body := range map[int]string{200: `{"limit": 3}`, 404: `not found`, 503: `{"error": "store down"}`} {
		if _, err := interpret(status, []byte(body)); err == nil {
			t.Errorf("interpret(%d, %s) gave no error", status, body)
		}
	}
	_, err := interpret(400, []byte(`{"error": "hits: bad", "field": "hits"}`))
	var invalid *RequestError
	if !errors.As(err, &invalid) || invalid.Field != "hits" || invalid.Status != 400 {
		t.Errorf("a 400 gave %v", err)
	}
}
