package ratelimiter_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	ratelimiter "github.com/viva-ratelimit/viva-ratelimit/sdk/go"
	"github.com/viva-ratelimit/viva-ratelimit/sdk/go/internal/contract"
)

// TestContract runs every vector of sdk/contract against real sidecar processes (memory and
// Redis stores), the middleware ones through the net/http middleware.
func TestContract(t *testing.T) {
	contract.Run(t, contract.Options{
		Clients: true,
		Frameworks: map[string]contract.Framework{"net-http": func(c *ratelimiter.Client, mw contract.MiddlewareSettings) http.Handler {
			identify := func(r *http.Request) string { return r.Header.Get(mw.IdentifierHeader) }
			return ratelimiter.Middleware(c, mw.Namespace, ratelimiter.Identify(identify),
				ratelimiter.Hits(mw.Hits))(contract.App)
		}},
	})
}

// The README's example as written (the port aside), on the api_requests rules (3 an hour);
// without Identify the middleware counts per client address; OnError sees what went wrong.
func TestReadmeExampleAndMiddlewareDefaults(t *testing.T) {
	dir, err := contract.FindDir()
	if err != nil {
		t.Fatal(err)
	}
	c, err := contract.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	sidecar := contract.StartSidecar(t, c, "memory", 0)
	ctx := context.Background()
	{
		client := ratelimiter.New(fmt.Sprintf("localhost:%d", sidecar.HTTPPort))
		var answers []bool
		for range 4 {
			if allowed := client.Allow(ctx, "user_123", "api_requests"); !allowed {
				answers = append(answers, false)
				continue
			}
			answers = append(answers, true)
		}
		if fmt.Sprint(answers) != "[true true true false]" {
			t.Fatalf("Allow x4 = %v", answers)
		}
	}

	client := ratelimiter.New(fmt.Sprintf("127.0.0.1:%d", sidecar.HTTPPort))
	server := httptest.NewServer(ratelimiter.Middleware(client, "contract_api")(contract.App))
	defer server.Close()
	for i, want := range []int{200, 200, 200, 429} {
		resp, err := http.Get(server.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("request %d: status %d, want %d", i, resp.StatusCode, want)
		}
	}
	res, err := client.Peek(ctx, ratelimiter.CheckRequest{Namespace: "contract_api", Identifier: "127.0.0.1"})
	if err != nil || res.Allowed || res.Remaining != 0 {
		t.Fatalf("the client address's budget: %+v, %v", res, err)
	}

	seen := make(chan error, 1)
	down := ratelimiter.New(fmt.Sprintf("127.0.0.1:%d", contract.FreePort(t)), ratelimiter.WithRetry(ratelimiter.RetryPolicy{Attempts: 1}))
	observed := httptest.NewServer(ratelimiter.Middleware(down, "contract_api",
		ratelimiter.OnError(func(_ *http.Request, err error) { seen <- err }))(contract.App))
	defer observed.Close()
	resp, err := http.Get(observed.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if err := <-seen; resp.StatusCode != 200 || !errors.Is(err, ratelimiter.ErrUnavailable) {
		t.Fatalf("fail open: status %d, OnError saw %v", resp.StatusCode, err)
	}
}
