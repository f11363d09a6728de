// Package logx holds the logging helpers that the relay's HTTP side and its
// delivery workers share without importing each other: a cheap check for
// debug lines, and a Sampler that turns a flood of identical lines into
// one line and a count.
package logx

import "github.com/sirupsen/logrus"

// DebugEnabled reports whether log writes debug lines, so that a hot path
// builds a debug line's fields only when the line will be written. A logger
// of another kind is assumed to write them.
func DebugEnabled(log logrus.FieldLogger) bool {
	switch l := log.(type) {
	case *logrus.Logger:
		return l.IsLevelEnabled(logrus.DebugLevel)
	case *logrus.Entry:
		return l.Logger.IsLevelEnabled(logrus.DebugLevel)
	}
	return true
}
