package pipeline

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Ref is one reference inside a step's input or for_each:
//
//	${item}                     the current element of a for_each step
//	${STEP.outputs.ID}          every output of STEP with output id ID (a list)
//	${STEP.outputs.ID[N]}       the N-th of them (a string; N from 0)
//	${STEP.outputs.*}           every media output of STEP, whatever its id
//	${STEP.outputs.*[N]}        the N-th of those
//
// For a for_each step, STEP's outputs are those of all its runs, in item
// order.
type Ref struct {
	Item   bool   `json:"item,omitempty"`
	Step   string `json:"step,omitempty"`
	Output string `json:"output,omitempty"` // an output id, or AnyOutput
	Index  int    `json:"index"`            // -1: the whole list
}

// AnyOutput in a reference selects media outputs whatever their id.
const AnyOutput = "*"

// ListValued reports whether the reference stands for a list.
func (r Ref) ListValued() bool { return !r.Item && r.Index < 0 }

func (r Ref) String() string {
	if r.Item {
		return "${item}"
	}
	if r.Index < 0 {
		return fmt.Sprintf("${%s.outputs.%s}", r.Step, r.Output)
	}
	return fmt.Sprintf("${%s.outputs.%s[%d]}", r.Step, r.Output, r.Index)
}

// maxIndex keeps indexes small enough to print and to mean something.
const maxIndex = 99999

var stepNamePattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_-]{0,39}$`)

// part is a literal piece of text or a reference.
type part struct {
	lit string
	ref *Ref
}

// template is a parsed string value. "$${" writes a literal "${".
type template []part

func parseTemplate(s string) (template, error) {
	var t template
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			t = append(t, part{lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); {
		switch {
		case strings.HasPrefix(s[i:], "$${"):
			lit.WriteString("${")
			i += 3
		case strings.HasPrefix(s[i:], "${"):
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return nil, fmt.Errorf("%q has an unterminated reference; close it with '}' or write a literal \"${\" as \"$${\"", s)
			}
			ref, err := parseRef(s[i+2 : i+2+end])
			if err != nil {
				return nil, err
			}
			flush()
			t = append(t, part{ref: ref})
			i += end + 3
		default:
			lit.WriteByte(s[i])
			i++
		}
	}
	flush()
	return t, nil
}

func parseRef(body string) (*Ref, error) {
	if body == "item" {
		return &Ref{Item: true, Index: -1}, nil
	}
	bad := func(why string) error {
		return fmt.Errorf("reference ${%s} %s; write ${STEP.outputs.ID}, ${STEP.outputs.ID[0]}, ${STEP.outputs.*} or ${item}", body, why)
	}
	step, rest, ok := strings.Cut(body, ".outputs.")
	if !ok {
		return nil, bad("is not understood")
	}
	if !stepNamePattern.MatchString(step) {
		return nil, bad(fmt.Sprintf("names %q, which is not a valid step name", step))
	}
	r := &Ref{Step: step, Output: rest, Index: -1}
	if strings.HasSuffix(rest, "]") {
		open := strings.LastIndexByte(rest, '[')
		if open < 0 {
			return nil, bad("has ']' without '['")
		}
		digits := rest[open+1 : len(rest)-1]
		n, err := strconv.Atoi(digits)
		if err != nil || n < 0 || n > maxIndex || digits != strconv.Itoa(n) {
			return nil, bad(fmt.Sprintf("has index [%s]; use a whole number from 0 to %d", digits, maxIndex))
		}
		r.Output, r.Index = rest[:open], n
	}
	if r.Output == "" {
		return nil, bad("names no output id")
	}
	if strings.ContainsAny(r.Output, "[]{}$") {
		return nil, bad(fmt.Sprintf("has output id %q, which must not contain '[', ']', '{', '}' or '$'", r.Output))
	}
	return r, nil
}

// exact returns the reference when t is exactly one reference.
func (t template) exact() *Ref {
	if len(t) == 1 && t[0].ref != nil {
		return t[0].ref
	}
	return nil
}

func (t template) refs() []Ref {
	var out []Ref
	for _, p := range t {
		if p.ref != nil {
			out = append(out, *p.ref)
		}
	}
	return out
}

// inputRefs calls fn for every reference in an input value. Strings and
// lists of strings may hold references; other values are literals.
func inputRefs(v any, fn func(Ref)) error {
	visit := func(s string) error {
		t, err := parseTemplate(s)
		if err != nil {
			return err
		}
		exact := t.exact() != nil
		for _, r := range t.refs() {
			if r.ListValued() && !exact {
				return fmt.Errorf("%s is a list, so it must be the whole value, not part of a longer string", r)
			}
			fn(r)
		}
		return nil
	}
	switch v := v.(type) {
	case string:
		return visit(v)
	case []any:
		for _, e := range v {
			switch e := e.(type) {
			case string:
				if err := visit(e); err != nil {
					return err
				}
			case []any, map[string]any:
				return fmt.Errorf("lists inside lists and objects are not valid input values")
			}
		}
	case map[string]any:
		return fmt.Errorf("objects are not valid input values; ComfyDeploy accepts strings, numbers, booleans and lists")
	case nil:
		return fmt.Errorf("null is not a valid input value; leave the input out to use the deployment's default")
	}
	return nil
}

// Output is one output of a finished run: a media URL or a text.
type Output struct {
	OutputID string `json:"output_id,omitempty"`
	// Kind is the ComfyDeploy data key ("images", "files", "gifs", …) or
	// KindText.
	Kind string `json:"kind"`
	// Value is the media URL (fresh: private URLs are signed for about an
	// hour) or the text.
	Value string `json:"value"`
}

// KindText marks a text output. AnyOutput references skip texts.
const KindText = "text"

// StepOutputs are a finished step's outputs in order; for a for_each step,
// those of all its runs in item order.
type StepOutputs []Output

// Select returns the values a reference with this output id stands for.
func (o StepOutputs) Select(outputID string) []string {
	out := []string{}
	for _, v := range o {
		if outputID == AnyOutput && v.Kind != KindText || outputID != AnyOutput && v.OutputID == outputID {
			out = append(out, v.Value)
		}
	}
	return out
}

// value returns what r stands for: a string, or a []string for a list.
func (r Ref) value(results map[string]StepOutputs, item *string) (any, error) {
	if r.Item {
		if item == nil {
			return nil, fmt.Errorf("${item} is only defined in a for_each step")
		}
		return *item, nil
	}
	outs, ok := results[r.Step]
	if !ok {
		return nil, fmt.Errorf("%s: step %q has not finished", r, r.Step)
	}
	values := outs.Select(r.Output)
	if r.Index < 0 {
		return values, nil
	}
	if r.Index >= len(values) {
		what := fmt.Sprintf("%d %q output(s)", len(values), r.Output)
		if r.Output == AnyOutput {
			what = fmt.Sprintf("%d media output(s)", len(values))
		}
		return nil, fmt.Errorf("%s: step %q produced %s", r, r.Step, what)
	}
	return values[r.Index], nil
}

func (t template) resolve(results map[string]StepOutputs, item *string) (any, error) {
	if r := t.exact(); r != nil {
		v, err := r.value(results, item)
		if list, ok := v.([]string); ok {
			return toAny(list), err
		}
		return v, err
	}
	var b strings.Builder
	for _, p := range t {
		if p.ref == nil {
			b.WriteString(p.lit)
			continue
		}
		v, err := p.ref.value(results, item)
		if err != nil {
			return nil, err
		}
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("%s is a list, so it must be the whole value, not part of a longer string", p.ref)
		}
		b.WriteString(s)
	}
	return b.String(), nil
}

func toAny(list []string) []any {
	out := make([]any, len(list))
	for i, s := range list {
		out[i] = s
	}
	return out
}

// Resolve returns step's inputs with every reference replaced: a string
// that is exactly one reference takes its value (a string, or a list for
// a list-valued reference); references inside longer strings must be
// single-valued and are substituted as text; in a list input, a
// list-valued element is spliced in. results holds the outputs of finished
// steps by name; item is the current element in a for_each step, else nil.
// Literal values are returned as they are ("$${" becomes "${").
func Resolve(step Step, results map[string]StepOutputs, item *string) (map[string]any, error) {
	out := make(map[string]any, len(step.Inputs))
	for _, name := range sortedKeys(step.Inputs) {
		v, err := resolveValue(step.Inputs[name], results, item)
		if err != nil {
			return nil, fmt.Errorf("step %q: input %q: %w", step.Name, name, err)
		}
		out[name] = v
	}
	return out, nil
}

func resolveValue(v any, results map[string]StepOutputs, item *string) (any, error) {
	switch v := v.(type) {
	case string:
		t, err := parseTemplate(v)
		if err != nil {
			return nil, err
		}
		return t.resolve(results, item)
	case []any:
		out := make([]any, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				out = append(out, e)
				continue
			}
			t, err := parseTemplate(s)
			if err != nil {
				return nil, err
			}
			r, err := t.resolve(results, item)
			if err != nil {
				return nil, err
			}
			if list, ok := r.([]any); ok {
				out = append(out, list...) // fan-in: a list reference is spliced
			} else {
				out = append(out, r)
			}
		}
		return out, nil
	default:
		return v, nil
	}
}

// ForEachItems returns the elements a for_each step fans out over.
func ForEachItems(step Step, results map[string]StepOutputs) ([]string, error) {
	t, err := parseTemplate(step.ForEach)
	if err != nil {
		return nil, fmt.Errorf("step %q: for_each: %w", step.Name, err)
	}
	r := t.exact()
	if r == nil || !r.ListValued() {
		return nil, fmt.Errorf("step %q: for_each must be one list-valued reference such as ${STEP.outputs.image}", step.Name)
	}
	v, err := r.value(results, nil)
	if err != nil {
		return nil, fmt.Errorf("step %q: for_each: %w", step.Name, err)
	}
	return v.([]string), nil
}

// Reads returns the steps whose outputs step references, sorted: their
// outputs must be at hand (and their URLs fresh) before step runs.
func Reads(step Step) []string {
	var names []string
	add := func(r Ref) {
		if !r.Item && !slices.Contains(names, r.Step) {
			names = append(names, r.Step)
		}
	}
	for _, name := range sortedKeys(step.Inputs) {
		_ = inputRefs(step.Inputs[name], add)
	}
	if step.ForEach != "" {
		_ = inputRefs(step.ForEach, add)
	}
	slices.Sort(names)
	return names
}

// IsReference reports whether an input value holds at least one reference,
// so it can only be checked against the deployment once resolved.
func IsReference(v any) bool {
	found := false
	_ = inputRefs(v, func(Ref) { found = true })
	return found
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
