package pipeline

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// MaxSteps bounds a pipeline; every step is at least one child workflow.
const MaxSteps = 200

var uuidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// Validate checks a spec's meaning without any API call: step names are
// valid and unique, every step names a deployment, durations parse,
// references are well formed and name existing steps, ${item} appears only
// in for_each steps, for_each is one list-valued reference, and the
// dependencies (depends_on plus every referenced step) form no cycle. It
// returns an *Error listing every problem, or nil.
func Validate(s *Spec) error {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	if s == nil || len(s.Steps) == 0 {
		return &Error{Problems: []string{"the spec has no steps; add at least one under \"steps\""}}
	}
	if len(s.Steps) > MaxSteps {
		add("the spec has %d steps; at most %d are allowed", len(s.Steps), MaxSteps)
	}
	checkSettings(add, "defaults", s.Defaults.QueueTimeout, s.Defaults.ExecutionTimeout)

	known := map[string]bool{}
	for i, st := range s.Steps {
		switch {
		case st.Name == "":
			add("step %d has no name", i+1)
		case !stepNamePattern.MatchString(st.Name):
			add("step name %q must be 1 to 40 letters, digits, '_' or '-' (not starting with '-')", st.Name)
		case known[st.Name]:
			add("step name %q is used twice; step names must be unique", st.Name)
		}
		known[st.Name] = true
	}

	for i, st := range s.Steps {
		where := fmt.Sprintf("step %q", st.Name)
		if st.Name == "" {
			where = fmt.Sprintf("step %d", i+1)
		}
		switch {
		case st.Deployment == "":
			add("%s: deployment is required (the deployment's UUID from the ComfyDeploy dashboard)", where)
		case !uuidPattern.MatchString(st.Deployment):
			add("%s: deployment %q is not a UUID; copy it from the ComfyDeploy dashboard", where, st.Deployment)
		}
		checkSettings(add, where, st.QueueTimeout, st.ExecutionTimeout)
		for _, dep := range st.DependsOn {
			switch {
			case dep == st.Name:
				add("%s: depends_on names the step itself", where)
			case !known[dep]:
				add("%s: depends_on names unknown step %q%s", where, dep, suggest(dep, s))
			}
		}
		checkRef := func(what string, r Ref) {
			switch {
			case r.Item && st.ForEach == "":
				add("%s: %s uses ${item}, which only a for_each step has", where, what)
			case r.Item:
			case r.Step == st.Name:
				add("%s: %s refers to the step's own outputs", where, what)
			case !known[r.Step]:
				add("%s: %s refers to unknown step %q%s", where, what, r.Step, suggest(r.Step, s))
			}
		}
		for _, name := range sortedKeys(st.Inputs) {
			what := fmt.Sprintf("input %q", name)
			if err := inputRefs(st.Inputs[name], func(r Ref) { checkRef(what, r) }); err != nil {
				add("%s: %s: %v", where, what, err)
			}
		}
		if st.ForEach != "" {
			t, err := parseTemplate(st.ForEach)
			r := t.exact()
			switch {
			case err != nil:
				add("%s: for_each: %v", where, err)
			case r == nil || !r.ListValued():
				add("%s: for_each must be one list-valued reference such as ${STEP.outputs.image} (no index), got %q", where, st.ForEach)
			default:
				checkRef("for_each", *r)
			}
		}
	}
	if len(problems) > 0 {
		return &Error{Problems: problems}
	}
	if cycle := findCycle(s); cycle != nil {
		return &Error{Problems: []string{"the steps depend on each other in a cycle: " + strings.Join(cycle, " → ")}}
	}
	return nil
}

func checkSettings(add func(string, ...any), where string, durations ...Duration) {
	for i, d := range durations {
		if d == "" {
			continue
		}
		name := []string{"queue_timeout", "execution_timeout"}[i]
		v, err := parseDuration(d)
		if err != nil || v < 0 {
			add("%s: %s %q must be a duration such as \"90s\", \"15m\" or \"1h30m\"", where, name, string(d))
		}
	}
}

// suggest names a step with the same name in another case, a common slip.
func suggest(name string, s *Spec) string {
	for _, st := range s.Steps {
		if strings.EqualFold(st.Name, name) {
			return fmt.Sprintf(" (did you mean %q?)", st.Name)
		}
	}
	return ""
}

// Dependencies returns the steps that must succeed before step starts:
// its depends_on and every step it references, sorted and without repeats.
func Dependencies(step Step) []string {
	deps := append(slices.Clone(step.DependsOn), Reads(step)...)
	slices.Sort(deps)
	return slices.Compact(deps)
}

// findCycle returns a cycle as step names (first repeated at the end), or nil.
func findCycle(s *Spec) []string {
	deps := map[string][]string{}
	for _, st := range s.Steps {
		deps[st.Name] = Dependencies(st)
	}
	const (
		unvisited = iota
		onPath
		done
	)
	state := map[string]int{}
	var path []string
	var visit func(string) []string
	visit = func(n string) []string {
		state[n] = onPath
		path = append(path, n)
		for _, d := range deps[n] {
			switch state[d] {
			case onPath:
				i := slices.Index(path, d)
				cycle := slices.Clone(path[i:])
				slices.Reverse(cycle) // read in run order: a → b means b needs a
				return append([]string{cycle[len(cycle)-1]}, cycle...)
			case unvisited:
				if c := visit(d); c != nil {
					return c
				}
			}
		}
		path = path[:len(path)-1]
		state[n] = done
		return nil
	}
	for _, st := range s.Steps {
		if state[st.Name] == unvisited {
			if c := visit(st.Name); c != nil {
				return c
			}
		}
	}
	return nil
}

// Normalize validates s and returns a copy in which every step carries its
// full dependency list (depends_on plus referenced steps, sorted) and the
// defaults for the settings it leaves empty, so that running a step needs
// nothing but the step.
func Normalize(s *Spec) (*Spec, error) {
	if err := Validate(s); err != nil {
		return nil, err
	}
	out := &Spec{Name: s.Name, Defaults: s.Defaults, Steps: make([]Step, len(s.Steps))}
	for i, st := range s.Steps {
		st.DependsOn = Dependencies(st)
		if st.GPU == "" {
			st.GPU = s.Defaults.GPU
		}
		if st.QueueTimeout == "" {
			st.QueueTimeout = s.Defaults.QueueTimeout
		}
		if st.ExecutionTimeout == "" {
			st.ExecutionTimeout = s.Defaults.ExecutionTimeout
		}
		if st.Retry == nil && s.Defaults.Retry != nil {
			r := *s.Defaults.Retry
			st.Retry = &r
		}
		out.Steps[i] = st
	}
	return out, nil
}

// Order returns the step names in an order that runs every step after its
// dependencies; among steps that are ready together, spec order wins.
func Order(s *Spec) ([]string, error) {
	if err := Validate(s); err != nil {
		return nil, err
	}
	deps := map[string][]string{}
	for _, st := range s.Steps {
		deps[st.Name] = Dependencies(st)
	}
	placed := map[string]bool{}
	order := make([]string, 0, len(s.Steps))
	for len(order) < len(s.Steps) {
		progress := false
		for _, st := range s.Steps {
			if placed[st.Name] {
				continue
			}
			ready := true
			for _, d := range deps[st.Name] {
				ready = ready && placed[d]
			}
			if ready {
				placed[st.Name] = true
				order = append(order, st.Name)
				progress = true
			}
		}
		if !progress {
			return nil, &Error{Problems: []string{"the steps depend on each other in a cycle"}}
		}
	}
	return order, nil
}

// CheckOutputs verifies that every reference to a named output names one
// the referenced step's deployment declares. declared maps a deployment id
// to its declared output ids; a deployment that declares none is not
// checked (older workflows have no output nodes with ids), and "*"
// references always pass.
func CheckOutputs(s *Spec, declared map[string][]string) error {
	deployment := map[string]string{}
	for _, st := range s.Steps {
		deployment[st.Name] = st.Deployment
	}
	var problems []string
	check := func(st Step, what string) func(Ref) {
		return func(r Ref) {
			if r.Item || r.Output == AnyOutput {
				return
			}
			ids := declared[deployment[r.Step]]
			if len(ids) == 0 || slices.Contains(ids, r.Output) {
				return
			}
			problems = append(problems, fmt.Sprintf("step %q: %s refers to output %q of step %q, but deployment %s declares only %s",
				st.Name, what, r.Output, r.Step, deployment[r.Step], quoteList(ids)))
		}
	}
	for _, st := range s.Steps {
		for _, name := range sortedKeys(st.Inputs) {
			_ = inputRefs(st.Inputs[name], check(st, fmt.Sprintf("input %q", name)))
		}
		if st.ForEach != "" {
			_ = inputRefs(st.ForEach, check(st, "for_each"))
		}
	}
	if len(problems) > 0 {
		return &Error{Problems: problems}
	}
	return nil
}

func quoteList(ids []string) string {
	q := make([]string, len(ids))
	for i, id := range ids {
		q[i] = fmt.Sprintf("%q", id)
	}
	return strings.Join(q, ", ")
}
