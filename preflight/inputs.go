package preflight

import (
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/durable-comfy/durable-comfy/comfy"
)

// CheckInputs validates inputs against a deployment's declared input types.
// ComfyDeploy itself ignores unknown keys and falls back to node defaults for
// missing ones, so a typo silently produces the wrong image; here it is an
// error that names the fix. Keys starting with "__" are reserved for
// correlation tokens and pass unchecked.
//
// Problems name the input and what it must be, never the value it was
// given (which may have come from a file the user did not mean to share); a
// name the deployment does not declare is shown as a short escaped prefix.
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
			problems = append(problems, UnknownInput(name, declaredNames(types)))
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
			return fmt.Sprintf("input %q must be a number (%s), got %s", t.InputID, describe(t), kindOf(v))
		}
		if t.Type == comfy.InputInteger && n != math.Trunc(n) {
			return fmt.Sprintf("input %q must be a whole number, got a fraction", t.InputID)
		}
		if t.MinValue != nil && n < *t.MinValue {
			return fmt.Sprintf("input %q is below the minimum %v", t.InputID, *t.MinValue)
		}
		if t.MaxValue != nil && n > *t.MaxValue {
			return fmt.Sprintf("input %q is above the maximum %v", t.InputID, *t.MaxValue)
		}
	case comfy.InputBoolean:
		if _, ok := v.(bool); !ok {
			return fmt.Sprintf("input %q must be true or false, got %s", t.InputID, kindOf(v))
		}
	default: // string and binary
		s, ok := v.(string)
		if !ok {
			return fmt.Sprintf("input %q must be a string (%s), got %s", t.InputID, describe(t), kindOf(v))
		}
		if len(t.EnumOptions) > 0 && !contains(t.EnumOptions, s) {
			return fmt.Sprintf("input %q is not one of %s", t.InputID, strings.Join(quoteAll(t.EnumOptions), ", "))
		}
		if isMedia(t) && !isMediaRef(s) {
			return fmt.Sprintf("input %q must be an http(s) URL or a data: URI of the file, got %s", t.InputID, mediaKind(s))
		}
	}
	return ""
}

// mediaKind says what a refused media reference looks like without
// quoting it.
func mediaKind(s string) string {
	u, err := url.Parse(s)
	switch {
	case strings.HasPrefix(s, "data:"):
		return "a data: URI that is not base64"
	case err == nil && u.Scheme != "" && u.Scheme != "http" && u.Scheme != "https":
		return fmt.Sprintf("a %s: URL", QuotePrefix(u.Scheme))
	case err == nil && u.Scheme != "" && u.Host == "":
		return "a URL without a host"
	}
	return "a string that is not a URL (a local path?)"
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

func declaredNames(types []comfy.InputType) []string {
	names := make([]string, len(types))
	for i, t := range types {
		names[i] = t.InputID
	}
	return names
}

// UnknownInput is the problem for an input the deployment does not declare.
// The name is shown as a short escaped prefix: it may be the first line of
// a file that was never meant as a batch source.
func UnknownInput(name string, declared []string) string {
	known := slices.Clone(declared)
	best, bestDist := "", 3
	for _, id := range known {
		if d := editDistance(strings.ToLower(name), strings.ToLower(id)); d < bestDist {
			best, bestDist = id, d
		}
	}
	sort.Strings(known)
	msg := fmt.Sprintf("input %s is not declared by the deployment (ComfyDeploy would silently ignore it)", QuotePrefix(name))
	if best != "" {
		msg += fmt.Sprintf("; did you mean %q?", best)
	}
	return msg + "; declared inputs: " + strings.Join(known, ", ")
}

// prefixRunes is how much of an untrusted string an error shows.
const prefixRunes = 12

// QuotePrefix quotes at most the first 12 characters of s, escaped, with
// "…" when there is more: enough to recognise a typo, too little to carry
// a secret out in an error message.
func QuotePrefix(s string) string {
	r := []rune(s)
	if len(r) <= prefixRunes {
		return strconv.Quote(s)
	}
	return strconv.Quote(string(r[:prefixRunes])) + "…"
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

// kindOf names the JSON type of v, not its value.
func kindOf(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	}
	if _, ok := number(v); ok {
		return "a number"
	}
	return "an unsupported value"
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
