package app

import (
	"fmt"
	"os"

	"github.com/sirupsen/logrus"

	"github.com/wamm-relay/wamm-relay/config"
)

// NewLogger builds the root logger from the [log] settings, writing to stderr.
func NewLogger(c config.Log) (*logrus.Logger, error) {
	log := logrus.New()
	log.SetOutput(os.Stderr)
	level, err := logrus.ParseLevel(c.Level)
	if err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	log.SetLevel(level)
	switch c.Format {
	case config.FormatText:
		log.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
	default:
		log.SetFormatter(&logrus.JSONFormatter{})
	}
	return log, nil
}
