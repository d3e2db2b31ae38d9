// Package logging builds the zap logger the commands use and bridges it to
// the two other logging interfaces in play: slog (the comfy client) and the
// Temporal SDK's log.Logger.
package logging

import (
	"fmt"
	"log/slog"

	"go.temporal.io/sdk/log"
	"go.uber.org/zap"
	"go.uber.org/zap/exp/zapslog"
	"go.uber.org/zap/zapcore"
)

// New returns a zap logger: "console" is colourful and human-first for
// development, "json" is one object per line for production log pipelines.
func New(format, level string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("log level %q: use debug, info, warn or error", level)
	}
	var cfg zap.Config
	switch format {
	case "console", "":
		cfg = zap.NewDevelopmentConfig()
		cfg.EncoderConfig.EncodeLevel = zapcore.CapitalColorLevelEncoder
		cfg.EncoderConfig.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05.000")
		cfg.DisableStacktrace = true
	case "json":
		cfg = zap.NewProductionConfig()
		cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	default:
		return nil, fmt.Errorf("log format %q: use console or json", format)
	}
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	return cfg.Build()
}

// Slog bridges z to slog.
func Slog(z *zap.Logger) *slog.Logger {
	return slog.New(zapslog.NewHandler(z.Core(), zapslog.WithCaller(true)))
}

// Temporal bridges z to the Temporal SDK logger.
func Temporal(z *zap.Logger) log.Logger {
	return log.NewStructuredLogger(Slog(z))
}
