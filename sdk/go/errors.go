package ratelimiter

import (
	"errors"
	"fmt"
)

// The errors a call returns:
//
//	*RequestError      the request is invalid (caught before sending, or a 400/413 from the
//	                   sidecar); Field names the culprit. Never retried: it is a bug in the caller.
//	*UnavailableError  the sidecar could not decide: unreachable after the retries, too slow, or
//	                   it answered an error (503: its store is down). errors.Is(err, ErrUnavailable).
//	*AuthError         VerifyKey only: the client has no root key, or the sidecar refused it
//	                   (401, or 403 without the scope keys:verify). errors.Is(err, ErrUnauthorized).
//
// With the first two, the Result returned alongside holds the failure mode's answer; a
// KeyVerification holds the verify failure mode's answer with an *UnavailableError only.
// No error ever holds an API key or the root key.

// ErrUnavailable matches every *UnavailableError with errors.Is.
var ErrUnavailable = errors.New("ratelimiter: the sidecar could not decide")

// UnavailableError says why the sidecar could not decide, after how many tries.
type UnavailableError struct {
	Attempts int
	Err      error
}

func (e *UnavailableError) Error() string {
	tries := "1 attempt"
	if e.Attempts != 1 {
		tries = fmt.Sprintf("%d attempts", e.Attempts)
	}
	return fmt.Sprintf("ratelimiter: the sidecar could not decide (%s): %v", tries, e.Err)
}

func (e *UnavailableError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrUnavailable) true.
func (e *UnavailableError) Is(target error) bool { return target == ErrUnavailable }

// RequestError is a request the sidecar refuses as malformed, or that the client caught before
// sending. Field is the JSON path of the culprit ("identifier", "descriptors[0][1].key"), empty
// when it is the request as a whole; Status is the sidecar's HTTP status, 0 when caught locally.
type RequestError struct {
	Status  int
	Field   string
	Message string
}

func (e *RequestError) Error() string {
	return "ratelimiter: invalid request: " + e.Message
}

func invalidField(field, message string) *RequestError {
	return &RequestError{Field: field, Message: field + ": " + message}
}

// ErrUnauthorized matches every *AuthError with errors.Is.
var ErrUnauthorized = errors.New("ratelimiter: the root key is missing or refused")

// AuthError is a verification the client could not send without a root key (Status 0), or
// that the sidecar refused for its root key: 401 (not valid) or 403 (no scope keys:verify).
type AuthError struct {
	Status  int
	Message string
}

func (e *AuthError) Error() string { return "ratelimiter: " + e.Message }

// Is makes errors.Is(err, ErrUnauthorized) true.
func (e *AuthError) Is(target error) bool { return target == ErrUnauthorized }
