package main

import (
	"testing"

	"github.com/kelseyhightower/envconfig"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func loadConfig(t *testing.T, env map[string]string) config {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	var cfg config
	require.NoError(t, envconfig.Process(envPrefix, &cfg))
	return cfg
}

func TestDefaultsAreValid(t *testing.T) {
	cfg := loadConfig(t, map[string]string{"COMFY_API_KEY": "k"})
	assert.NoError(t, cfg.validate())
	assert.Empty(t, cfg.WebhookURL, "webhooks are off unless asked for")
	assert.Equal(t, ":8089", cfg.WebhookListen)
}

func TestWebhookSecretWithoutURLIsRejected(t *testing.T) {
	cfg := loadConfig(t, map[string]string{"COMFY_API_KEY": "k", "COMFY_WEBHOOK_SECRET": "0123456789abcdef0123"})
	assert.ErrorContains(t, cfg.validate(), "COMFY_WEBHOOK_URL is not")
}

func TestZeroDurationsAreRejected(t *testing.T) {
	cfg := loadConfig(t, map[string]string{"COMFY_API_KEY": "k", "COMFY_POLL_INTERVAL": "0s"})
	assert.ErrorContains(t, cfg.validate(), "COMFY_POLL_INTERVAL must be a positive duration")
}
