package contract

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	ratelimiter "github.com/viva-ratelimit/viva-ratelimit/sdk/go"
)

// verify runs a verifyKey step and describes its outcome in the contract's names; "texts"
// holds what must not show a secret (the error, the verdict and the client as printed).
func verify(client *ratelimiter.Client, s Step, started time.Time) map[string]any {
	var opts []ratelimiter.VerifyOption
	if s.Cost != nil {
		opts = append(opts, ratelimiter.Cost(*s.Cost))
	}
	if s.Limits != nil {
		opts = append(opts, ratelimiter.CheckLimits(s.Limits...))
	}
	if s.Features != nil {
		opts = append(opts, ratelimiter.RequireFeatures(s.Features...))
	}
	if s.ClientAddress != nil {
		opts = append(opts, ratelimiter.ClientAddress(*s.ClientAddress))
	}
	v, err := client.VerifyKey(context.Background(), deref(s.Key), opts...)
	texts := map[string]string{"verdict": fmt.Sprintf("%+v", v), "client": fmt.Sprintf("%+v", client)}
	out := map[string]any{"verification": verificationView(v, started), "texts": texts}
	if err != nil {
		texts["error"] = err.Error()
	}
	var invalid *ratelimiter.RequestError
	var unavailable *ratelimiter.UnavailableError
	switch {
	case errors.As(err, &invalid):
		out["error"] = map[string]any{"kind": "invalid_request", "field": invalid.Field}
	case errors.Is(err, ratelimiter.ErrUnauthorized):
		out["error"] = map[string]any{"kind": "unauthorized"}
	case errors.As(err, &unavailable):
		out["unavailable"] = map[string]any{"attempts": unavailable.Attempts}
	case err != nil:
		out["error"] = map[string]any{"kind": "unexpected", "message": err.Error()}
	}
	return out
}

func verificationView(v ratelimiter.KeyVerification, started time.Time) map[string]any {
	view := map[string]any{"valid": v.Valid, "code": nil, "key_id": nil, "customer_id": nil,
		"plan": nil, "features": []any{}, "remaining": nil, "reset_at": nil, "limits": []any{}}
	for name, value := range map[string]string{"code": string(v.Code), "key_id": v.KeyID,
		"customer_id": v.CustomerID, "plan": v.Plan} {
		if value != "" {
			view[name] = value
		}
	}
	features := []any{}
	for _, f := range v.Features {
		features = append(features, f)
	}
	view["features"] = features
	if v.Limited {
		view["remaining"], view["reset_at"] = v.Remaining, secondsFrom(v.ResetAt, started)
	}
	limits := []any{}
	for _, l := range v.Limits {
		limits = append(limits, map[string]any{"name": l.Name, "limit": l.Limit,
			"remaining": l.Remaining, "reset_at": secondsFrom(l.ResetAt, started), "exceeded": l.Exceeded})
	}
	view["limits"] = limits
	return view
}

func secondsFrom(t, started time.Time) float64 { return math.Ceil(t.Sub(started).Seconds()) }

// leaks lists the texts that show one of the secrets (README: "checked for secrets").
func leaks(secrets []string, texts map[string]string) []string {
	var out []string
	for place, text := range texts {
		for _, secret := range secrets {
			if secret != "" && strings.Contains(text, secret) {
				out = append(out, fmt.Sprintf("the %s shows a secret: %.300q", place, text))
			}
		}
	}
	return out
}
