package main

import (
	"context"
	"time"
)

// sequentialDuration is how long the sequential scenario sends when neither
// --duration nor --count is given.
const sequentialDuration = 20 * time.Second

// sequential sends from one client, each webhook only once the previous one
// was answered: WAMM's own pattern. Nothing then shares a group commit with
// a webhook, so every ack carries a whole commit of its own (its fsync, on
// SQLite), which a run with many connections hides.
func sequential(ctx context.Context, o *options, g *generator) {
	if o.count > 0 {
		g.closedLoop(ctx, 1, o.count)
		return
	}
	d := o.duration
	if d == 0 {
		d = sequentialDuration
	}
	lctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	g.closedLoop(lctx, 1, 0)
}
