package store

import (
	"context"
	"time"
)

// TargetPauses is the durable pause switch of targets: an operator's pause
// holds on every instance and across restarts until resumed.
type TargetPauses interface {
	// PauseTarget pauses target from at on (pausing a paused target keeps
	// its first time).
	PauseTarget(ctx context.Context, target string, at time.Time) error
	// ResumeTarget lifts the pause; resuming a target that is not paused
	// does nothing.
	ResumeTarget(ctx context.Context, target string) error
	// PausedTargets lists the paused targets by name.
	PausedTargets(ctx context.Context) ([]string, error)
}
