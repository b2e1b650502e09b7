package ratelimiter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

const (
	testKey  = "viva_AcXgQx9sbHq9c2jnvM1WkN78NHQ6"
	testRoot = "vroot_test_0123456789abcdef0123456789abcdef"
)

// answering is a server on the sidecar's port giving every call this answer; it records the
// requests' Authorization headers and bodies.
func answering(t *testing.T, status int, body string, seen *[]string) *httptest.Server {
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, _ := io.ReadAll(r.Body)
		if seen != nil {
			*seen = append(*seen, r.URL.Path+" "+r.Header.Get("Authorization")+" "+string(data))
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(server.Close)
	return server
}

func TestVerifyKeySendsTheRootKeyWithVerificationsOnly(t *testing.T) {
	var seen []string
	server := answering(t, 200, `{"valid": true, "code": "VALID", "key_id": "key_1",
		"customer_id": "c", "plan": "pro", "features": ["exports"], "remaining": 4,
		"reset_at": "2030-01-01T00:00:00Z", "limits": [{"name": "per_hour", "limit": 5,
		"remaining": 4, "reset_at": "2030-01-01T00:00:00Z", "exceeded": false}]}`, &seen)
	client := New(server.URL, WithRootKey(testRoot))
	v, err := client.VerifyKey(context.Background(), testKey, Cost(0), CheckLimits("per_hour"))
	if err != nil || !v.Valid || v.Code != KeyValid || !v.Limited || v.Remaining != 4 ||
		len(v.Limits) != 1 || v.Limits[0] != (VerifiedLimit{"per_hour", 5, 4, v.ResetAt, false}) {
		t.Fatalf("VerifyKey = %+v, %v", v, err)
	}
	want := "/v1/keys/verify Bearer " + testRoot + ` {"key":"` + testKey + `","cost":0,"limits":["per_hour"]}`
	if seen[0] != want {
		t.Fatalf("sent %q; want %q", seen[0], want)
	}
	_, _ = client.Check(context.Background(), CheckRequest{Namespace: "n", Identifier: "u"})
	if !strings.HasPrefix(seen[1], "/v1/check  {") {
		t.Fatalf("a check sent %q: the root key goes with verifications only", seen[1])
	}
}

func TestVerifyKeyFailsClosedByDefault(t *testing.T) {
	echo := answering(t, 502, "upstream said "+testKey, nil)
	for mode, valid := range map[FailureMode]bool{FailClosed: false, FailOpen: true} {
		client := New(echo.URL, WithRootKey(testRoot), WithVerifyFailureMode(mode))
		v, err := client.VerifyKey(context.Background(), testKey)
		if !errors.Is(err, ErrUnavailable) || v.Valid != valid || v.Code != "" {
			t.Errorf("%v: VerifyKey = %+v, %v", mode, v, err)
		}
		if strings.Contains(err.Error(), testKey) || !strings.HasSuffix(err.Error(), "HTTP 502 from the sidecar") {
			t.Errorf("the error quotes a body the sidecar did not write: %v", err)
		}
	}
	if New("localhost:8080").VerifyFailureMode() != FailClosed {
		t.Error("the default verify failure mode is not FailClosed")
	}
	v, err := New(answering(t, 200, `{"valid": true, "code": "MAYBE"}`, nil).URL,
		WithRootKey(testRoot)).VerifyKey(context.Background(), testKey)
	if v.Valid || !errors.Is(err, ErrUnavailable) {
		t.Errorf("an unknown code: %+v, %v", v, err)
	}
}

func TestARefusedRootKeyIsAnErrorEvenFailingOpen(t *testing.T) {
	for _, status := range []int{401, 403} {
		server := answering(t, status, `{"error": "the root key is not valid", "field": null}`, nil)
		client := New(server.URL, WithRootKey(testRoot), WithVerifyFailureMode(FailOpen))
		v, err := client.VerifyKey(context.Background(), testKey)
		var auth *AuthError
		if v.Valid || !errors.As(err, &auth) || auth.Status != status || !errors.Is(err, ErrUnauthorized) {
			t.Errorf("HTTP %d: VerifyKey = %+v, %v", status, v, err)
		}
	}
	v, err := New("localhost:1", WithVerifyFailureMode(FailOpen)).VerifyKey(context.Background(), testKey)
	if v.Valid || !errors.Is(err, ErrUnauthorized) {
		t.Errorf("without a root key: %+v, %v", v, err)
	}
}

func TestTheRootKeyIsNeverPrinted(t *testing.T) {
	client := New("localhost:8080", WithRootKey(testRoot))
	for _, format := range []string{"%v", "%+v", "%#v"} {
		if text := fmt.Sprintf(format, client); strings.Contains(text, testRoot) {
			t.Errorf("%s shows the root key: %s", format, text)
		}
	}
	for _, opt := range []Option{WithRootKey(" "), WithVerifyFailureMode(FailureMode(9))} {
		if _, err := NewClient("localhost:8080", opt); err == nil {
			t.Error("an invalid option was accepted")
		}
	}
}

func TestTheClientAddressIsSentAsGiven(t *testing.T) {
	printable := ""
	for c := byte(0x21); c <= 0x7e; c++ {
		printable += string(c)
	}
	longest := (printable + strings.Repeat("z", 128))[:128]
	for _, address := range []string{"203.0.113.9", "[2001:db8::1]:443", longest} {
		var seen []string
		server := answering(t, 200, `{"valid": false, "code": "NOT_FOUND"}`, &seen)
		_, err := New(server.URL, WithRootKey(testRoot)).VerifyKey(context.Background(), testKey, ClientAddress(address))
		encoded, _ := json.Marshal(address)
		want := "/v1/keys/verify Bearer " + testRoot + ` {"key":"` + testKey + `","cost":1,"client_address":` + string(encoded) + `}`
		if err != nil || len(seen) != 1 || seen[0] != want {
			t.Errorf("%q: sent %q (%v); want %q", address, seen, err, want)
		}
	}
}

func TestABadClientAddressIsRefusedBeforeSending(t *testing.T) {
	var seen []string
	client := New(answering(t, 200, `{}`, &seen).URL, WithRootKey(testRoot))
	for _, address := range []string{"", "a b", strings.Repeat("z", 129), "caf\u00e9", "tab\t", "del\x7f"} {
		_, err := client.VerifyKey(context.Background(), testKey, ClientAddress(address))
		var invalid *RequestError
		if !errors.As(err, &invalid) || invalid.Field != "client_address" || invalid.Status != 0 {
			t.Errorf("%q: %v", address, err)
		}
	}
	if len(seen) != 0 {
		t.Errorf("sent %q", seen)
	}
}
