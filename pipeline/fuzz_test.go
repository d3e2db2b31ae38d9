package pipeline

import (
	"slices"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary documents through the whole static path:
// parsing, validation, normalisation and ordering must never panic, and
// whenever a spec validates, Order must place each step after its
// dependencies.
func FuzzParse(f *testing.F) {
	f.Add([]byte(heroYAML))
	f.Add([]byte(`{"steps":[{"name":"a","deployment":"` + depTxt2Img + `","inputs":{"p":"x"}}]}`))
	f.Add([]byte("steps:\n- name: a\n  deployment: " + depTxt2Img + "\n  for_each: ${b.outputs.*}\n- name: b\n  deployment: " + depUpscale + "\n  depends_on: [a]\n"))
	f.Add([]byte("steps: [{name: x, deployment: y, inputs: {i: [\"${x.outputs.o[0]}\", 1, [2]]}}]"))
	f.Add([]byte("name: [1, 2]"))
	f.Add([]byte("\xff\xfe"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse(data)
		if err != nil {
			return
		}
		if Validate(s) != nil {
			return
		}
		n, err := Normalize(s)
		if err != nil {
			t.Fatalf("Normalize failed on a valid spec: %v", err)
		}
		order, err := Order(n)
		if err != nil {
			t.Fatalf("Order failed on a valid spec: %v", err)
		}
		if len(order) != len(s.Steps) {
			t.Fatalf("order %v has %d steps, want %d", order, len(order), len(s.Steps))
		}
		for _, st := range n.Steps {
			at := slices.Index(order, st.Name)
			for _, d := range st.DependsOn {
				if slices.Index(order, d) >= at {
					t.Fatalf("step %q placed before its dependency %q in %v", st.Name, d, order)
				}
			}
		}
	})
}

// FuzzResolve checks the reference resolver on arbitrary input strings:
// it never panics; a value without references comes back unchanged but
// for "$${" escapes; and a value that validates resolves, against outputs
// that satisfy every index, to a string or (for one list reference) a list.
func FuzzResolve(f *testing.F) {
	for _, s := range []string{
		"${txt2img.outputs.image[0]}", "${txt2img.outputs.*}", "${item}", "a ${item} b ${txt2img.outputs.caption[0]}",
		"$${literal}", "${", "${}", "${a.outputs.}", "${a.outputs.x[99999]}", "${a.outputs.x[1][2]}", "plain", "",
		"${txt2img.outputs.image[0]}${item}", "$$${item}", "${a.outputs.b.outputs.c}",
	} {
		f.Add(s)
	}
	item := "https://cdn/item.png"
	f.Fuzz(func(t *testing.T, in string) {
		step := Step{Name: "s", ForEach: "${txt2img.outputs.*}", Inputs: map[string]any{"x": in, "l": []any{in}}}
		got, err := Resolve(step, results(), &item)
		if !strings.Contains(in, "${") {
			if err != nil || got["x"] != in {
				t.Fatalf("literal %q came back as %v, %v", in, got["x"], err)
			}
			return
		}
		if !IsReference(in) {
			if err == nil && got["x"] != strings.ReplaceAll(in, "$${", "${") {
				t.Fatalf("literal %q came back as %q", in, got["x"])
			}
			return
		}
		if err != nil {
			return
		}
		switch v := got["x"].(type) {
		case string:
		case []any:
			for _, e := range v {
				if _, ok := e.(string); !ok {
					t.Fatalf("list element %v of %q is not a string", e, in)
				}
			}
		default:
			t.Fatalf("%q resolved to %T", in, v)
		}
	})
}
