package contract

import (
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Match compares actual with an expectation of the contract (README, "Steps and
// expectations") and returns one line per mismatch, each starting with its path.
func Match(path string, expect, actual any) []string {
	if m, ok := expect.(map[string]any); ok && len(m) == 1 {
		for key, arg := range m {
			switch key {
			case "between":
				return between(path, arg, actual)
			case "matches":
				return matches(path, arg, actual)
			case "absent":
				if actual != nil {
					return []string{fmt.Sprintf("%s: expected absent, got %v", path, actual)}
				}
				return nil
			}
		}
	}
	switch e := expect.(type) {
	case map[string]any:
		a, ok := actual.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: expected an object, got %#v", path, actual)}
		}
		var out []string
		for _, key := range sortedKeys(e) {
			out = append(out, Match(path+"."+key, e[key], a[key])...)
		}
		return out
	case []any:
		a, ok := actual.([]any)
		if !ok || len(a) != len(e) {
			return []string{fmt.Sprintf("%s: expected %d items, got %#v", path, len(e), actual)}
		}
		var out []string
		for i := range e {
			out = append(out, Match(fmt.Sprintf("%s[%d]", path, i), e[i], a[i])...)
		}
		return out
	}
	if !equal(expect, actual) {
		return []string{fmt.Sprintf("%s: expected %#v, got %#v", path, expect, actual)}
	}
	return nil
}

func equal(expect, actual any) bool {
	if en, ok := number(expect); ok {
		an, ok := number(actual)
		return ok && en == an
	}
	return reflect.DeepEqual(expect, actual)
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	}
	return 0, false
}

func between(path string, arg, actual any) []string {
	bounds, _ := arg.([]any)
	if len(bounds) != 2 {
		return []string{path + ": between needs [lo, hi]"}
	}
	lo, _ := number(bounds[0])
	hi, _ := number(bounds[1])
	n, ok := number(actual)
	if s, isText := actual.(string); isText {
		parsed, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		n, ok = float64(parsed), err == nil
	}
	if !ok || n < lo || n > hi {
		return []string{fmt.Sprintf("%s: expected a number in [%v, %v], got %#v", path, lo, hi, actual)}
	}
	return nil
}

func matches(path string, arg, actual any) []string {
	pattern, _ := arg.(string)
	text, ok := actual.(string)
	re, err := regexp.Compile(pattern)
	if err != nil {
		return []string{fmt.Sprintf("%s: bad pattern %q: %v", path, pattern, err)}
	}
	if !ok || !re.MatchString(text) {
		return []string{fmt.Sprintf("%s: expected to match %q, got %#v", path, pattern, actual)}
	}
	return nil
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
