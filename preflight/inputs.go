package preflight

import (
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"sort"
	"strings"

	"github.com/durable-comfy/durable-comfy/comfy"
)

// CheckInputs validates inputs against a deployment's declared input types.
// ComfyDeploy itself ignores unknown keys and falls back to node defaults for
// missing ones, so a typo silently produces the wrong image; here it is an
// error that names the fix. Keys starting with "__" are reserved for
// correlation tokens and pass unchecked.
func CheckInputs(types []comfy.InputType, inputs map[string]any) error {
	byID := make(map[string]comfy.InputType, len(types))
	for _, t := range types {
		byID[t.InputID] = t
	}
	var problems []string

	names := make([]string, 0, len(inputs))
	for name := range inputs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if strings.HasPrefix(name, "__") {
			continue
		}
		t, ok := byID[name]
		if !ok {
			problems = append(problems, unknownInput(name, types))
			continue
		}
		if p := checkValue(t, inputs[name]); p != "" {
			problems = append(problems, p)
		}
	}
	for _, t := range types {
		if _, ok := inputs[t.InputID]; !ok && isRequired(t) {
			problems = append(problems, fmt.Sprintf("input %q is required (%s); add it to inputs", t.InputID, describe(t)))
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return &Rejection{Kind: KindInvalidInput, Message: "inputs do not match the deployment", Problems: problems}
}

// isRequired treats an input without a default as required: ComfyDeploy
// would otherwise run the node with an empty value.
func isRequired(t comfy.InputType) bool {
	if t.Required != nil {
		return *t.Required
	}
	return t.DefaultValue == nil
}

func checkValue(t comfy.InputType, v any) string {
	switch t.Type {
	case comfy.InputInteger, comfy.InputFloat:
		n, ok := number(v)
		if !ok {
			return fmt.Sprintf("input %q must be a number (%s), got %s", t.InputID, describe(t), show(v))
		}
		if t.Type == comfy.InputInteger && n != math.Trunc(n) {
			return fmt.Sprintf("input %q must be a whole number, got %v", t.InputID, n)
		}
		if t.MinValue != nil && n < *t.MinValue {
			return fmt.Sprintf("input %q is %v, below the minimum %v", t.InputID, n, *t.MinValue)
		}
		if t.MaxValue != nil && n > *t.MaxValue {
			return fmt.Sprintf("input %q is %v, above the maximum %v", t.InputID, n, *t.MaxValue)
		}
	case comfy.InputBoolean:
		if _, ok := v.(bool); !ok {
			return fmt.Sprintf("input %q must be true or false, got %s", t.InputID, show(v))
		}
	default: // string and binary
		s, ok := v.(string)
		if !ok {
			return fmt.Sprintf("input %q must be a string (%s), got %s", t.InputID, describe(t), show(v))
		}
		if len(t.EnumOptions) > 0 && !contains(t.EnumOptions, s) {
			return fmt.Sprintf("input %q is %q, which is not one of %s", t.InputID, s, strings.Join(quoteAll(t.EnumOptions), ", "))
		}
		if isMedia(t) && !isMediaRef(s) {
			return fmt.Sprintf("input %q must be an http(s) URL or a data: URI of the file, got %q", t.InputID, truncate(s, 60))
		}
	}
	return ""
}

// isMedia reports whether the input takes a file (image, video, audio…) by
// reference rather than a literal string.
func isMedia(t comfy.InputType) bool {
	if t.Type == comfy.InputBinary {
		return true
	}
	for _, k := range []string{"Image", "Video", "Audio", "File"} {
		if strings.HasPrefix(t.ClassType, "ComfyUIDeployExternal"+k) {
			return true
		}
	}
	return false
}

func isMediaRef(s string) bool {
	if strings.HasPrefix(s, "data:") {
		return strings.Contains(s, ";base64,")
	}
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case float64:
		return n, true
	case float32:
		return float64(n), true
	case int:
		return float64(n), true
	case int64:
		return float64(n), true
	case int32:
		return float64(n), true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	}
	return 0, false
}

func describe(t comfy.InputType) string {
	var b strings.Builder
	b.WriteString(string(t.Type))
	if len(t.EnumOptions) > 0 {
		b.WriteString(" one of " + strings.Join(quoteAll(t.EnumOptions), ", "))
	}
	if t.MinValue != nil || t.MaxValue != nil {
		lo, hi := "-∞", "∞"
		if t.MinValue != nil {
			lo = fmt.Sprint(*t.MinValue)
		}
		if t.MaxValue != nil {
			hi = fmt.Sprint(*t.MaxValue)
		}
		b.WriteString(" in [" + lo + ", " + hi + "]")
	}
	return b.String()
}

func unknownInput(name string, types []comfy.InputType) string {
	known := make([]string, 0, len(types))
	best, bestDist := "", 3
	for _, t := range types {
		known = append(known, t.InputID)
		if d := editDistance(strings.ToLower(name), strings.ToLower(t.InputID)); d < bestDist {
			best, bestDist = t.InputID, d
		}
	}
	sort.Strings(known)
	msg := fmt.Sprintf("input %q is not declared by the deployment (ComfyDeploy would silently ignore it)", name)
	if best != "" {
		msg += fmt.Sprintf("; did you mean %q?", best)
	}
	return msg + "; declared inputs: " + strings.Join(known, ", ")
}

// editDistance is the Levenshtein distance, used only for "did you mean".
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func show(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case string:
		return fmt.Sprintf("string %q", truncate(v, 40))
	case bool:
		return fmt.Sprintf("boolean %v", v)
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	default:
		return fmt.Sprintf("%v", v)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func quoteAll(list []string) []string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
