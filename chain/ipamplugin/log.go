package ipamplugin

import (
	"os"
	"path/filepath"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// newLogger writes JSON lines to the configured file: stdout carries the CNI result and
// stderr is often dropped by runtimes. Logging never makes an operation fail.
func newLogger(file, level string, fields ...zap.Field) *zap.Logger {
	lvl := zapcore.InfoLevel
	if level != "" {
		if l, err := zapcore.ParseLevel(level); err == nil {
			lvl = l
		}
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return zap.NewNop()
	}
	f, err := os.OpenFile(file, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return zap.NewNop()
	}
	enc := zap.NewProductionEncoderConfig()
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	core := zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.Lock(f), lvl)
	return zap.New(core).With(fields...)
}
