package app

import (
	"context"
	"fmt"
	"time"

	"github.com/wamm-relay/wamm-relay/relay"
	"github.com/wamm-relay/wamm-relay/store"
	"github.com/wamm-relay/wamm-relay/targets"
)

// pauseSyncInterval is how soon a pause made through another instance or
// the CLI holds on this one.
const pauseSyncInterval = 2 * time.Second

// targetControl joins the admin API's pause switch to the store (durable,
// seen by every instance) and the dispatcher (at once on this one).
type targetControl struct {
	dispatcher *targets.Dispatcher
	pauses     store.TargetPauses
	now        func() time.Time
}

func (c targetControl) TargetState(name string) (relay.TargetState, bool) {
	st, ok := c.dispatcher.State(name)
	if !ok {
		return relay.TargetState{}, false
	}
	return relay.TargetState{Paused: st.Paused, Breaker: st.Breaker, BreakerOpenUntil: st.OpenUntil, RateLimit: st.RateLimit}, true
}

func (c targetControl) SetPaused(ctx context.Context, name string, paused bool) error {
	if paused {
		if err := c.pauses.PauseTarget(ctx, name, c.now()); err != nil {
			return fmt.Errorf("pause target %s: %w", name, err)
		}
	} else if err := c.pauses.ResumeTarget(ctx, name); err != nil {
		return fmt.Errorf("resume target %s: %w", name, err)
	}
	c.dispatcher.SetPaused(name, paused)
	return nil
}
