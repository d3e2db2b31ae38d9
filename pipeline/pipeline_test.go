package pipeline

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	depTxt2Img   = "de000000-0000-4000-8000-000000000001"
	depUpscale   = "de000000-0000-4000-8000-000000000002"
	depImg2Video = "de000000-0000-4000-8000-000000000003"
)

const heroYAML = `
name: hero
defaults:
  queue_timeout: 10m
  retry: {max_attempts: 2}
steps:
  - name: txt2img
    deployment: ` + depTxt2Img + `
    inputs: {prompt: "a lighthouse at dusk", seed: 7}
  - name: upscale
    deployment: ` + depUpscale + `
    inputs: {image: "${txt2img.outputs.image[0]}", scale: 2x}
  - name: animate
    deployment: ` + depImg2Video + `
    for_each: "${upscale.outputs.image}"
    depends_on: [txt2img]
    execution_timeout: 90
    inputs: {image: "${item}"}
`

func problems(t *testing.T, err error) []string {
	t.Helper()
	var e *Error
	require.True(t, errors.As(err, &e), "want *Error, got %v", err)
	return e.Problems
}

func TestParseYAMLAndJSONAgree(t *testing.T) {
	y, err := Parse([]byte(heroYAML))
	require.NoError(t, err)
	raw, err := json.Marshal(y)
	require.NoError(t, err)
	j, err := Parse(raw)
	require.NoError(t, err)
	assert.Equal(t, y, j)

	assert.Equal(t, "hero", y.Name)
	require.Len(t, y.Steps, 3)
	assert.Equal(t, float64(7), y.Steps[0].Inputs["seed"], "numbers read as JSON numbers")
	assert.Equal(t, Duration("1m30s"), y.Steps[2].ExecutionTimeout, "numbers are seconds")
	assert.Equal(t, 2, y.Defaults.Retry.MaxAttempts)
	require.NoError(t, Validate(y))
}

func TestParseIsStrict(t *testing.T) {
	_, err := Parse([]byte("steps:\n  - name: a\n    deployment: x\n    input: {}\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `unknown field "input"`)

	_, err = Parse([]byte("steps: []\nsteps: []\n"))
	require.Error(t, err, "repeated keys are errors")

	_, err = Parse([]byte("  \n"))
	assert.Equal(t, []string{"the spec is empty"}, problems(t, err))
}

func TestValidateReportsEveryProblem(t *testing.T) {
	s := &Spec{Steps: []Step{
		{Name: "a", Deployment: depTxt2Img, Inputs: map[string]any{"prompt": "${item}"}},
		{Name: "a", Deployment: "txt2img"},
		{Name: "b c", Deployment: depUpscale, DependsOn: []string{"A", "b c"},
			Inputs: map[string]any{"image": "${Upscale.outputs.image[0]}", "x": "pre ${a.outputs.image} post", "o": map[string]any{}}},
		{Name: "d", Deployment: depImg2Video, ForEach: "${a.outputs.image[0]}", QueueTimeout: "soon"},
		{Name: "e", Deployment: depImg2Video, Inputs: map[string]any{"image": "${e.outputs.video}", "y": "${a.outputs}", "z": "${a.outputs.image"}},
	}}
	got := problems(t, Validate(s))
	want := []string{
		`step name "a" is used twice`,
		`step name "b c" must be 1 to 40`,
		`step "a": input "prompt" uses ${item}, which only a for_each step has`,
		`step "a": deployment "txt2img" is not a UUID`,
		`step "b c": depends_on names unknown step "A" (did you mean "a"?)`,
		`step "b c": depends_on names the step itself`,
		`step "b c": input "image" refers to unknown step "Upscale"`,
		`step "b c": input "o": objects are not valid input values`,
		`step "b c": input "x": ${a.outputs.image} is a list, so it must be the whole value`,
		`step "d": queue_timeout "soon" must be a duration`,
		`step "d": for_each must be one list-valued reference`,
		`step "e": input "image" refers to the step's own outputs`,
		`step "e": input "y": reference ${a.outputs} is not understood`,
		`step "e": input "z": "${a.outputs.image" has an unterminated reference`,
	}
	for _, w := range want {
		assert.True(t, containsPrefix(got, w), "missing %q in\n%s", w, strings.Join(got, "\n"))
	}
	assert.Len(t, got, len(want))
}

func containsPrefix(list []string, prefix string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}

func TestValidateNamesTheCycle(t *testing.T) {
	s := &Spec{Steps: []Step{
		{Name: "a", Deployment: depTxt2Img, Inputs: map[string]any{"image": "${c.outputs.image[0]}"}},
		{Name: "b", Deployment: depUpscale, DependsOn: []string{"a"}},
		{Name: "c", Deployment: depImg2Video, Inputs: map[string]any{"image": "${b.outputs.*[0]}"}},
		{Name: "d", Deployment: depImg2Video},
	}}
	assert.Equal(t, []string{"the steps depend on each other in a cycle: a → b → c → a"}, problems(t, Validate(s)))
	_, err := Order(s)
	require.Error(t, err)
}

func TestNormalizeAddsReferencedStepsAndDefaults(t *testing.T) {
	s, err := Parse([]byte(heroYAML))
	require.NoError(t, err)
	n, err := Normalize(s)
	require.NoError(t, err)
	assert.Empty(t, n.Steps[0].DependsOn)
	assert.Equal(t, []string{"txt2img"}, n.Steps[1].DependsOn, "referenced step is a dependency")
	assert.Equal(t, []string{"txt2img", "upscale"}, n.Steps[2].DependsOn, "explicit and for_each dependencies merge")
	assert.Equal(t, Duration("10m"), n.Steps[1].QueueTimeout)
	assert.Equal(t, Duration("1m30s"), n.Steps[2].ExecutionTimeout, "a step's own value wins")
	require.NotNil(t, n.Steps[0].Retry)
	n.Steps[0].Retry.MaxAttempts = 5
	assert.Equal(t, 2, s.Defaults.Retry.MaxAttempts, "the copy does not share the defaults")
	assert.Nil(t, s.Steps[1].DependsOn, "the input spec is not changed")
}

func TestOrderKeepsSpecOrderAmongReadySteps(t *testing.T) {
	s := &Spec{Steps: []Step{
		{Name: "video", Deployment: depImg2Video, Inputs: map[string]any{"image": "${up.outputs.image[0]}"}},
		{Name: "b", Deployment: depTxt2Img},
		{Name: "up", Deployment: depUpscale, Inputs: map[string]any{"image": "${a.outputs.image[0]}"}},
		{Name: "a", Deployment: depTxt2Img},
	}}
	order, err := Order(s)
	require.NoError(t, err)
	assert.Equal(t, []string{"b", "a", "up", "video"}, order)
}

func TestCheckOutputs(t *testing.T) {
	s, err := Parse([]byte(heroYAML))
	require.NoError(t, err)
	declared := map[string][]string{depTxt2Img: {"image", "caption"}, depUpscale: {"image"}, depImg2Video: {"video"}}
	require.NoError(t, CheckOutputs(s, declared))

	s.Steps[1].Inputs["image"] = "${txt2img.outputs.picture[0]}"
	s.Steps[2].ForEach = "${upscale.outputs.*}"
	assert.Equal(t, []string{`step "upscale": input "image" refers to output "picture" of step "txt2img", but deployment ` +
		depTxt2Img + ` declares only "image", "caption"`}, problems(t, CheckOutputs(s, declared)))

	delete(declared, depTxt2Img)
	require.NoError(t, CheckOutputs(s, declared), "a deployment that declares nothing is not checked")
}

func results() map[string]StepOutputs {
	return map[string]StepOutputs{
		"txt2img": {
			{OutputID: "image", Kind: "images", Value: "https://cdn/a.png?sig=1"},
			{OutputID: "caption", Kind: KindText, Value: "a fox"},
			{OutputID: "image", Kind: "images", Value: "https://cdn/b.png?sig=2"},
		},
		"animate": {
			{OutputID: "video", Kind: "files", Value: "https://cdn/v0.mp4"},
			{OutputID: "video", Kind: "files", Value: "https://cdn/v1.mp4"},
		},
	}
}

func TestResolve(t *testing.T) {
	item := "https://cdn/item.png"
	step := Step{Name: "s", Inputs: map[string]any{
		"first":   "${txt2img.outputs.image[0]}",
		"second":  "${txt2img.outputs.*[1]}",
		"all":     "${txt2img.outputs.image}",
		"any":     "${txt2img.outputs.*}",
		"caption": "caption: ${txt2img.outputs.caption[0]}!",
		"item":    "${item}",
		"videos":  "${animate.outputs.video}",
		"mixed":   []any{"${animate.outputs.video}", "${txt2img.outputs.image[0]}", 3.0},
		"escaped": "cost $${price}",
		"n":       12.0,
	}}
	got, err := Resolve(step, results(), &item)
	require.NoError(t, err)
	assert.Equal(t, map[string]any{
		"first":   "https://cdn/a.png?sig=1",
		"second":  "https://cdn/b.png?sig=2",
		"all":     []any{"https://cdn/a.png?sig=1", "https://cdn/b.png?sig=2"},
		"any":     []any{"https://cdn/a.png?sig=1", "https://cdn/b.png?sig=2"},
		"caption": "caption: a fox!",
		"item":    item,
		"videos":  []any{"https://cdn/v0.mp4", "https://cdn/v1.mp4"},
		"mixed":   []any{"https://cdn/v0.mp4", "https://cdn/v1.mp4", "https://cdn/a.png?sig=1", 3.0},
		"escaped": "cost ${price}",
		"n":       12.0,
	}, got)
}

func TestResolveErrorsNameStepInputAndReference(t *testing.T) {
	for input, want := range map[string]string{
		"${txt2img.outputs.image[2]}":    `step "s": input "x": ${txt2img.outputs.image[2]}: step "txt2img" produced 2 "image" output(s)`,
		"${txt2img.outputs.*[9]}":        `step "s": input "x": ${txt2img.outputs.*[9]}: step "txt2img" produced 2 media output(s)`,
		"${later.outputs.image[0]}":      `step "s": input "x": ${later.outputs.image[0]}: step "later" has not finished`,
		"${item}":                        `step "s": input "x": ${item} is only defined in a for_each step`,
		"a ${txt2img.outputs.image} b":   `step "s": input "x": ${txt2img.outputs.image} is a list, so it must be the whole value`,
		"${txt2img.outputs.image[-1]}":   `step "s": input "x": reference ${txt2img.outputs.image[-1]} has index [-1]`,
		"${txt2img.outputs.image[01]}":   `step "s": input "x": reference ${txt2img.outputs.image[01]} has index [01]`,
		"${txt2img.outputs.im]age[0]}":   `step "s": input "x": reference ${txt2img.outputs.im]age[0]} has output id "im]age"`,
		"${txt2img.outputs.image]}":      `step "s": input "x": reference ${txt2img.outputs.image]} has ']' without '['`,
		"${txt2img.outputs.[0]}":         `step "s": input "x": reference ${txt2img.outputs.[0]} names no output id`,
		"${-x.outputs.image}":            `step "s": input "x": reference ${-x.outputs.image} names "-x", which is not a valid step name`,
		"${txt2img.outputs.image[0]} ${": `step "s": input "x": "${txt2img.outputs.image[0]} ${" has an unterminated reference`,
	} {
		_, err := Resolve(Step{Name: "s", Inputs: map[string]any{"x": input}}, results(), nil)
		require.Error(t, err, input)
		assert.True(t, strings.HasPrefix(err.Error(), want), "%s:\n got %s\nwant %s", input, err, want)
	}
}

func TestForEachItemsAndReads(t *testing.T) {
	step := Step{Name: "s", ForEach: "${txt2img.outputs.*}", Inputs: map[string]any{"image": "${item}", "caption": "${txt2img.outputs.caption[0]}", "v": []any{"${animate.outputs.video[1]}"}}}
	items, err := ForEachItems(step, results())
	require.NoError(t, err)
	assert.Equal(t, []string{"https://cdn/a.png?sig=1", "https://cdn/b.png?sig=2"}, items, "* skips texts")
	assert.Equal(t, []string{"animate", "txt2img"}, Reads(step))
	assert.True(t, IsReference(step.Inputs["v"]))
	assert.False(t, IsReference("plain $${text}"))
	assert.False(t, IsReference(3.0))

	_, err = ForEachItems(Step{Name: "s", ForEach: "${txt2img.outputs.image[0]}"}, results())
	assert.ErrorContains(t, err, "list-valued")
}
