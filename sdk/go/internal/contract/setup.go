package contract

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"time"
)

// saved is a ${NAME.FIELD} placeholder of a vector, filled from the setup's saved answers.
var saved = regexp.MustCompile(`\$\{([a-z_]+)\.([a-z_]+)\}`)

// Setup makes a vector's admin calls in order, with the run's root key, and returns the string
// fields of the answers saved as "NAME.FIELD" (README, "Setup").
func (s *Sidecar) Setup(requests []SetupRequest) (map[string]string, error) {
	values := map[string]string{}
	client := &http.Client{Timeout: 10 * time.Second}
	for _, request := range requests {
		if err := fillSaved(&request, values); err != nil {
			return nil, err
		}
		answer, err := s.admin(client, request)
		if err != nil {
			return nil, fmt.Errorf("setup %s %s: %w", request.Method, request.Path, err)
		}
		if request.Save == "" {
			continue
		}
		var doc map[string]any
		if err := json.Unmarshal(answer, &doc); err != nil {
			return nil, fmt.Errorf("setup %s %s: %w", request.Method, request.Path, err)
		}
		for field, value := range doc {
			if text, ok := value.(string); ok {
				values[request.Save+"."+field] = text
			}
		}
	}
	return values, nil
}

func (s *Sidecar) admin(client *http.Client, r SetupRequest) ([]byte, error) {
	var body io.Reader
	if r.Body != nil {
		data, err := json.Marshal(r.Body)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequest(r.Method, fmt.Sprintf("http://127.0.0.1:%d%s", s.HTTPPort, r.Path), body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+s.contract.RootKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, answer)
	}
	return answer, nil
}

// save keeps the string fields of a step's answer as "NAME.FIELD" when the step has save.
func save(name string, answer any, values map[string]string) {
	fields, _ := answer.(map[string]any)
	if name == "" {
		return
	}
	for field, value := range fields {
		if text, ok := value.(string); ok {
			values[name+"."+field] = text
		}
	}
}

// fillSaved replaces ${NAME.FIELD} in every string of *v (a Step or a SetupRequest) by what
// the setup saved; an error names a placeholder nothing saved.
func fillSaved[T any](v *T, values map[string]string) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var missing string
	data = saved.ReplaceAllFunc(data, func(m []byte) []byte {
		name := string(m[2 : len(m)-1])
		value, ok := values[name]
		if !ok {
			missing = name
			return m
		}
		quoted, _ := json.Marshal(value)
		return quoted[1 : len(quoted)-1] // inside a JSON string already
	})
	if missing != "" {
		return fmt.Errorf("${%s}: no setup call or earlier step saved it", missing)
	}
	var out T
	if err := json.Unmarshal(data, &out); err != nil {
		return err
	}
	*v = out
	return nil
}
