package targets

import (
	"slices"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/store"
)

// Reservation holds one free worker on each of some targets for an event
// being ingested, so that its deliveries to them, leased to this instance
// in the ingest's own transaction, are attempted at once from memory
// instead of being claimed back from the store. Exactly one of Start and
// Cancel must follow.
type Reservation struct {
	live  *runState
	pools []*pool
	// probes[i]: the worker on pools[i] is its breaker's probe.
	probes []bool
	lease  store.HandoffLease
}

// Reserve takes a free worker on each of targets that is keeping up (its
// last claim found fewer due deliveries than it had room for: a target
// with a queue gets its new deliveries in due order, through claims). It
// returns nil when it took none, or when Run is not accepting work.
func (d *Dispatcher) Reserve(targets []string) *Reservation {
	d.liveMu.RLock()
	defer d.liveMu.RUnlock()
	if d.live == nil || d.live.soft.Err() != nil {
		return nil
	}
	var r *Reservation
	for _, name := range targets {
		p, ok := d.byName[name]
		if !ok || !p.keepingUp.Load() {
			continue
		}
		select {
		case p.sem <- struct{}{}:
		default:
			continue // every worker is busy
		}
		probe := false
		if !p.gate.unlimited() {
			var ok bool
			if ok, probe = p.gate.tryOne(d.now()); !ok {
				// Paused, breaker open or out of tokens: the delivery
				// stays pending for the loop, which the gate paces.
				<-p.sem
				continue
			}
		}
		if r == nil {
			r = &Reservation{live: d.live, lease: store.HandoffLease{Owner: d.opts.Owner}}
		}
		d.live.attempts.Add(1)
		r.pools = append(r.pools, p)
		r.probes = append(r.probes, probe)
		r.lease.Targets = append(r.lease.Targets, name)
		// The lease covers the ingest's commit and the whole attempt, as a
		// claim's does.
		if until := d.now().Add(p.lease); until.After(r.lease.Until) {
			r.lease.Until = until
		}
	}
	return r
}

// Lease is what the store is to lease: the reserved targets, to this
// instance, until their attempts' leases end.
func (r *Reservation) Lease() store.HandoffLease { return r.lease }

// Start attempts each leased delivery on its target's reserved worker; a
// reserved worker whose target has no delivery among ds, or whose lease has
// too little time left for an attempt, is given back.
func (r *Reservation) Start(ds []event.Delivery) {
	for j, p := range r.pools {
		i := slices.IndexFunc(ds, func(d event.Delivery) bool { return d.Target == p.target.Name })
		if i < 0 {
			r.free(j)
			continue
		}
		// The ingest's commit took so long that the lease would end
		// before the attempt could time out: another instance could claim
		// the delivery meanwhile and send it too. Leave it to the claims
		// once the lease ends.
		if r.lease.Until.Sub(p.d.now()) < p.target.Timeout {
			r.free(j)
			continue
		}
		dl := ds[i]
		go func() {
			defer r.live.attempts.Done()
			p.attempt(r.live.soft, r.live.hard, dl)
		}()
	}
}

// Cancel gives every reserved worker back: the ingest failed or was a
// duplicate, so there is nothing to attempt. Deliveries an ingest leased
// although its caller saw an error (the commit outlived the caller's
// context) are the store's to give back to the claimers.
func (r *Reservation) Cancel() {
	for j := range r.pools {
		r.free(j)
	}
}

// free gives back the worker reserved on r.pools[j], and its breaker's
// probe if it was one; the loop then looks again, as it may now probe.
func (r *Reservation) free(j int) {
	p := r.pools[j]
	if r.probes[j] {
		p.gate.abandonProbe()
		p.nudge()
	}
	p.returnSlot()
	r.live.attempts.Done()
}
