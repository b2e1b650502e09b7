package ratelimiter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

const verifyPath = "/v1/keys/verify"

// VerifyCode is the sidecar's verdict on an API key, from a closed list.
type VerifyCode string

// The codes of a verification.
const (
	KeyValid         VerifyCode = "VALID"
	KeyNotFound      VerifyCode = "NOT_FOUND"      // malformed (bad checksum), or no such key
	KeyExpired       VerifyCode = "EXPIRED"        // past its expiry (a rotated key after its grace period)
	KeyRevoked       VerifyCode = "REVOKED"        // revoked, or its customer deleted
	KeyDisabled      VerifyCode = "DISABLED"       // disabled, or its plan is gone
	KeyForbidden     VerifyCode = "FORBIDDEN"      // a required feature is not in the plan; nothing charged
	KeyRateLimited   VerifyCode = "RATE_LIMITED"   // a rate limit of the key is used up
	KeyQuotaExceeded VerifyCode = "QUOTA_EXCEEDED" // a calendar quota of the key is used up
)

var verifyCodes = map[VerifyCode]bool{KeyValid: true, KeyNotFound: true, KeyExpired: true,
	KeyRevoked: true, KeyDisabled: true, KeyForbidden: true, KeyRateLimited: true, KeyQuotaExceeded: true}

// KeyVerification is the verdict on a key. It never holds the key itself.
type KeyVerification struct {
	Valid bool
	// Code is empty only when the sidecar could not answer: VerifyKey's error is then an
	// *UnavailableError and Valid is the verify failure mode's answer.
	Code       VerifyCode
	KeyID      string // empty for NOT_FOUND
	CustomerID string
	Plan       string
	Features   []string // the plan's
	// Limited is false when no limit was checked (the key was refused before, or FORBIDDEN);
	// Remaining and ResetAt, the tightest limit's, are then zero.
	Limited   bool
	Remaining int
	ResetAt   time.Time
	Limits    []VerifiedLimit // one per limit checked, in order
}

// VerifiedLimit is one limit of the key as the verification left it.
type VerifiedLimit struct {
	Name      string
	Limit     int
	Remaining int
	ResetAt   time.Time
	Exceeded  bool
}

// VerifyOption adjusts one verification.
type VerifyOption func(*verifyBody)

// Cost is charged to every limit checked (default 1; 0 checks without charging).
func Cost(n int) VerifyOption { return func(b *verifyBody) { b.Cost = n } }

// CheckLimits checks only the key's limits of these names, in this order (default: all).
func CheckLimits(names ...string) VerifyOption {
	return func(b *verifyBody) { b.Limits = append(b.Limits, names...) }
}

// RequireFeatures answers FORBIDDEN, charging nothing, unless the key's plan has them all.
func RequireFeatures(names ...string) VerifyOption {
	return func(b *verifyBody) { b.Features = append(b.Features, names...) }
}

// ClientAddress says who presented the key to the application: its address, or any stable id
// of that client (1 to 128 printable ASCII characters, no spaces). The sidecar counts failed
// verifications per root key and client address, and past its budget answers RATE_LIMITED
// without a lookup: with it, one client guessing keys is refused alone; without it, every
// client of the application shares the root key's budget. In an http.Handler, pass
// ClientIP(r) (the peer's address without its port, which changes with every connection) or
// the address a proxy you trust forwarded; in Gin, c.ClientIP(). An empty address is an error
// (a *RequestError naming client_address): leave the option out when there is none.
func ClientAddress(address string) VerifyOption {
	return func(b *verifyBody) { b.ClientAddress = &address }
}

type verifyBody struct {
	Key           string   `json:"key"`
	Cost          int      `json:"cost"`
	Limits        []string `json:"limits,omitempty"`
	Features      []string `json:"features,omitempty"`
	ClientAddress *string  `json:"client_address,omitempty"`
}

// maxClientAddress is the longest client address the sidecar accepts.
const maxClientAddress = 128

// clientAddressProblem says what is wrong with a client address, "" when nothing is.
func clientAddressProblem(address string) string {
	if address == "" {
		return "is empty"
	}
	for i := 0; i < len(address); i++ { // bytes: any byte of a non-ASCII character is >= 0x80
		if address[i] < 0x21 || address[i] > 0x7e {
			return "has a space, a control character or a character outside ASCII"
		}
	}
	if len(address) > maxClientAddress {
		return fmt.Sprintf("has %d characters", len(address))
	}
	return ""
}

// VerifyKey authenticates an API key with the sidecar in full mode (POST /v1/keys/verify) and
// charges its plan's limits: one call for "who is this, and may they". It needs the client's
// root key (WithRootKey).
//
// err is a *RequestError for a malformed request (Field names the culprit; never the key's
// value), an *AuthError when there is no root key or the sidecar refuses it, and with both
// Valid is false whatever the failure mode; it is an *UnavailableError when the sidecar could
// not answer, and Valid is then the verify failure mode's answer (false by default). So
// "if !v.Valid { refuse }" does what was configured, err or not.
func (c *Client) VerifyKey(ctx context.Context, key string, opts ...VerifyOption) (KeyVerification, error) {
	body := verifyBody{Key: key, Cost: 1}
	for _, opt := range opts {
		opt(&body)
	}
	switch {
	case key == "":
		return KeyVerification{}, invalidField("key", "must not be empty")
	case body.Cost < 0:
		return KeyVerification{}, invalidField("cost", fmt.Sprintf("%d is negative; expected 0 or more", body.Cost))
	case body.ClientAddress != nil && clientAddressProblem(*body.ClientAddress) != "":
		return KeyVerification{}, invalidField("client_address", clientAddressProblem(*body.ClientAddress)+
			fmt.Sprintf("; expected 1 to %d printable ASCII characters without spaces", maxClientAddress))
	case c.cfg.rootKey == nil:
		return KeyVerification{}, &AuthError{Message: "VerifyKey needs a root key with the scope keys:verify (WithRootKey)"}
	}
	payload, err := json.Marshal(body)
	if err != nil {
		return KeyVerification{}, invalidField("", "the request cannot be encoded as JSON")
	}
	header := http.Header{"Authorization": {"Bearer " + c.cfg.rootKey.value}}
	status, answer, attempts, err := c.exchange(ctx, http.MethodPost, verifyPath, payload, header)
	if err != nil {
		return c.unverified(attempts, err)
	}
	return c.verdict(status, answer, attempts)
}

// unverified is the verify failure mode's answer, with the error.
func (c *Client) unverified(attempts int, err error) (KeyVerification, error) {
	return KeyVerification{Valid: c.cfg.verifyMode == FailOpen}, &UnavailableError{Attempts: attempts, Err: err}
}

func (c *Client) verdict(status int, answer []byte, attempts int) (KeyVerification, error) {
	var failure struct {
		Error string  `json:"error"`
		Field *string `json:"field"`
	}
	known := json.Unmarshal(answer, &failure) == nil && failure.Error != ""
	switch status {
	case http.StatusOK:
		v, err := decodeVerification(answer)
		if err != nil {
			return c.unverified(attempts, err)
		}
		return v, nil
	case http.StatusUnauthorized, http.StatusForbidden:
		e := &AuthError{Status: status, Message: fmt.Sprintf("HTTP %d from the sidecar", status)}
		if known {
			e.Message += ": " + clip(failure.Error)
		}
		return KeyVerification{}, e
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		e := &RequestError{Status: status, Message: fmt.Sprintf("HTTP %d from the sidecar", status)}
		if known {
			e.Message = failure.Error
			if failure.Field != nil {
				e.Field = *failure.Field
			}
		}
		return KeyVerification{}, e
	}
	// Only the sidecar's own error text, never a body it did not write: something else on its
	// port might echo the request, and the request holds the key.
	text := fmt.Sprintf("HTTP %d from the sidecar", status)
	if known {
		text += ": " + clip(failure.Error)
	}
	return c.unverified(attempts, errors.New(text))
}

// wireVerification is a verification as the REST API writes it (null: no value).
type wireVerification struct {
	Valid      *bool           `json:"valid"`
	Code       VerifyCode      `json:"code"`
	KeyID      *string         `json:"key_id"`
	CustomerID *string         `json:"customer_id"`
	Plan       *string         `json:"plan"`
	Features   []string        `json:"features"`
	Remaining  *int            `json:"remaining"`
	ResetAt    *time.Time      `json:"reset_at"`
	Limits     []VerifiedLimit `json:"limits"`
}

func decodeVerification(body []byte) (KeyVerification, error) {
	var w wireVerification
	if err := json.Unmarshal(body, &w); err != nil || w.Valid == nil || !verifyCodes[w.Code] {
		return KeyVerification{}, errors.New("the sidecar's answer is not a verification")
	}
	v := KeyVerification{Valid: *w.Valid, Code: w.Code, KeyID: text(w.KeyID),
		CustomerID: text(w.CustomerID), Plan: text(w.Plan), Features: w.Features,
		Limited: w.Remaining != nil, Remaining: deref(w.Remaining), Limits: w.Limits}
	if w.ResetAt != nil {
		v.ResetAt = *w.ResetAt
	}
	return v, nil
}

// UnmarshalJSON reads one entry of a verification's "limits".
func (l *VerifiedLimit) UnmarshalJSON(data []byte) error {
	var w struct {
		Name      string    `json:"name"`
		Limit     int       `json:"limit"`
		Remaining int       `json:"remaining"`
		ResetAt   time.Time `json:"reset_at"`
		Exceeded  bool      `json:"exceeded"`
	}
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	*l = VerifiedLimit(w)
	return nil
}

func text(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func clip(s string) string {
	if len(s) > 200 {
		return s[:200]
	}
	return s
}
