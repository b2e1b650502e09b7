// Package ratelimiter is the Go client of the Viva rate-limit sidecar: it asks the sidecar's
// REST API (POST /v1/check, /v1/report) whether a request may go ahead, and wraps that in
// net/http middleware. It depends on the standard library only; the Gin middleware lives in
// the module's ginlimiter directory, a module of its own, so that this one stays that way.
//
//	client := ratelimiter.New("localhost:8080")
//	if allowed := client.Allow(ctx, "user_123", "api"); !allowed {
//		// refuse
//	}
//
// A namespace is a rules domain of the sidecar and an identifier the value of the descriptor
// entry "identifier", so "- key: identifier" in a domain's rules gives every identifier its
// own budget.
//
// Failures: a call that cannot reach the sidecar (connection refused, no route, a dial that
// timed out) is retried with exponential backoff and full jitter; anything the sidecar answered
// (a 400, a 503) and a timeout while waiting for its answer are not, since the hits may already
// be charged. When the tries run out the failure mode answers: [FailOpen] (the default) allows,
// [FailClosed] refuses. [Client.Check] then returns that answer together with an
// [*UnavailableError]; a request the sidecar finds invalid returns a [*RequestError] naming the
// field.
//
// Leases: [Client.Lease] and [Client.WithLease] hold a slot of a concurrency limit (a rule
// with algorithm: concurrency) while a stream or a WebSocket is open, renewed in the
// background and released when done; [Client.AcquireLease], [Client.RenewLease] and
// [Client.ReleaseLease] are the calls underneath.
package ratelimiter
