package devserver

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/durable-comfy/durable-comfy/workflows"
)

func TestFlagsCarryEverySettingAndSearchAttribute(t *testing.T) {
	flags := Flags()
	for _, s := range DynamicConfig {
		i := slices.Index(flags, s.Key+"="+s.Value)
		if assert.Positive(t, i, s.Key) {
			assert.Equal(t, "--dynamic-config-value", flags[i-1])
		}
	}
	for name := range workflows.SearchAttributes() {
		// The CLI takes NAME=TYPE with the type's display name.
		i := slices.Index(flags, name+"=Keyword")
		if assert.Positive(t, i, name) {
			assert.Equal(t, "--search-attribute", flags[i-1])
		}
	}
	assert.Len(t, flags, 2*(len(DynamicConfig)+len(workflows.SearchAttributes())))
}

func TestTestOptionsAppendExtraArgs(t *testing.T) {
	opts := TestOptions("bin/temporal", "--http-port", "7243")
	assert.Equal(t, "bin/temporal", opts.ExistingPath)
	assert.Equal(t, append(DynamicConfigFlags(), "--http-port", "7243"), opts.ExtraArgs)
	assert.Equal(t, len(workflows.SearchAttributes()), opts.SearchAttributes.Size())
}
