package ratelimiter_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"time"

	ratelimiter "github.com/viva-ratelimit/viva-ratelimit/sdk/go"
)

// The sidecar's quick start serves the namespace "api_requests": 100 requests a minute for
// every identifier.
func Example() {
	ctx := context.Background()
	client := ratelimiter.New("localhost:8080")
	if allowed := client.Allow(ctx, "user_123", "api"); !allowed {
		fmt.Println("slow down")
		return
	}
	fmt.Println("go ahead")
}

func ExampleNew_options() {
	client := ratelimiter.New("http://ratelimit.internal:8080",
		ratelimiter.WithTimeout(200*time.Millisecond),
		ratelimiter.WithRetry(ratelimiter.RetryPolicy{Attempts: 2, Backoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond}),
		ratelimiter.WithFailureMode(ratelimiter.FailClosed))
	_ = client
}

func ExampleClient_Check() {
	client := ratelimiter.New("localhost:8080")
	res, err := client.Check(context.Background(), ratelimiter.CheckRequest{
		Namespace: "api_requests", Identifier: "user_123", Hits: 1})
	var invalid *ratelimiter.RequestError
	switch {
	case errors.As(err, &invalid):
		log.Fatalf("bug: %s is wrong: %v", invalid.Field, err)
	case errors.Is(err, ratelimiter.ErrUnavailable):
		log.Printf("rate limiter unavailable, answering %v: %v", res.Allowed, err)
	}
	if !res.Allowed {
		fmt.Printf("refused; retry in %v\n", res.RetryAfter)
		return
	}
	fmt.Printf("%d of %d left until %v\n", res.Remaining, res.Limit, res.ResetAt)
}

func ExampleClient_Check_descriptors() {
	client := ratelimiter.New("localhost:8080")
	res, _ := client.Check(context.Background(), ratelimiter.CheckRequest{
		Namespace: "shop",
		Descriptors: []ratelimiter.Descriptor{
			{{Key: "user", Value: "user_123"}},
			{{Key: "route", Value: "/cart"}, {Key: "method", Value: "POST"}},
		}})
	for _, each := range res.Results {
		fmt.Println(each.Policy, each.Allowed, each.Remaining)
	}
}

func ExampleClient_Report() {
	client := ratelimiter.New("localhost:8080")
	tokens := 1234 // known only once the work is done
	res, err := client.Report(context.Background(), ratelimiter.CheckRequest{
		Namespace: "llm_tokens", Identifier: "user_123", Hits: tokens})
	if err == nil && !res.Allowed {
		fmt.Println("budget used up until", res.ResetAt)
	}
}

func ExampleMiddleware() {
	client := ratelimiter.New("localhost:8080")
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "hello") })
	limited := ratelimiter.Middleware(client, "api_requests",
		ratelimiter.Identify(func(r *http.Request) string {
			if key := r.Header.Get("X-Api-Key"); key != "" {
				return key
			}
			return ratelimiter.ClientIP(r)
		}))
	log.Fatal(http.ListenAndServe("127.0.0.1:8000", limited(mux)))
}

// Full mode: authenticate the caller's API key and charge its plan's limits in one call. The
// caller's address keeps its failed verifications on a budget of its own.
func ExampleClient_VerifyKey() {
	client := ratelimiter.New("localhost:8080", ratelimiter.WithRootKey("vroot_…")) // scope keys:verify
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, err := client.VerifyKey(r.Context(), r.Header.Get("X-Api-Key"),
			ratelimiter.RequireFeatures("exports"), ratelimiter.ClientAddress(ratelimiter.ClientIP(r)))
		if err != nil {
			log.Printf("verification: %v", err) // never holds the key
		}
		switch {
		case v.Valid:
			fmt.Fprintf(w, "hello %s (%d left)\n", v.CustomerID, v.Remaining)
		case v.Code == ratelimiter.KeyRateLimited || v.Code == ratelimiter.KeyQuotaExceeded:
			http.Error(w, string(v.Code), http.StatusTooManyRequests)
		case v.Code == ratelimiter.KeyForbidden:
			http.Error(w, "not in your plan", http.StatusForbidden)
		default: // NOT_FOUND, EXPIRED, REVOKED, DISABLED, or not verifiable now (Code "")
			http.Error(w, "invalid API key", http.StatusUnauthorized)
		}
	})
	log.Fatal(http.ListenAndServe("127.0.0.1:8000", handler))
}

// A concurrency limit (rule: {algorithm: concurrency, max: 5, lease_ttl: 60s}): at most 5
// streams per user at once. WithLease holds a slot while the function runs, renewing it in the
// background, and releases it when the function returns; its context is cancelled if the lease
// is lost.
func ExampleClient_WithLease() {
	client := ratelimiter.New("localhost:8080")
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := client.WithLease(r.Context(), r.Header.Get("X-User"), "ws", func(ctx context.Context, _ *ratelimiter.Lease) error {
			return stream(ctx, w) // until the client leaves, or ctx ends
		})
		var refused *ratelimiter.LeaseRefusedError
		if errors.As(err, &refused) {
			w.Header().Set("Retry-After", fmt.Sprint(int(refused.Result.RetryAfter.Seconds())))
			http.Error(w, "too many open streams", http.StatusTooManyRequests)
		}
	})
	log.Fatal(http.ListenAndServe("127.0.0.1:8000", handler))
}

func stream(ctx context.Context, w http.ResponseWriter) error {
	<-ctx.Done()
	return ctx.Err()
}

// The same with the lease in hand: Renew and Release are yours to call (renewals also run in
// the background until Release, or until ctx is done).
func ExampleClient_Lease() {
	ctx := context.Background()
	client := ratelimiter.New("localhost:8080")
	lease, err := client.Lease(ctx, "user_123", "ws", ratelimiter.TTL(30*time.Second))
	if err != nil { // *LeaseRefusedError: every slot is held (or FailClosed without the sidecar)
		fmt.Println("no slot:", err)
		return
	}
	defer lease.Release(context.WithoutCancel(ctx))
	fmt.Println("holding", lease.ID(), "until", lease.Result().ExpiresAt)
}
