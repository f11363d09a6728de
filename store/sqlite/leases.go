package sqlite

import "sync"

// leaseTable holds the leases of a SQLite store in memory. A SQLite file is
// delivered from by one process (see claimLock), so a lease has nobody to
// coordinate with but this process's own workers, and writing it to the
// database cost a B-tree update and a commit per claim. A crash loses the
// leases, which is what a restarted relay (a new owner) needs anyway: the
// deliveries it had in flight are due again at once.
//
// Claims, handoffs and recorded outcomes change the table from the writer
// goroutine only, in the order their transactions commit, so a claim never
// reads a delivery whose outcome is committed but whose lease is gone.
// Release may run anywhere: it changes no row.
type leaseTable struct {
	mu sync.Mutex
	m  map[int64]lease
}

type lease struct {
	owner string
	until int64 // unix ms
}

// sweepAbove is the table size above which taking leases first drops the
// expired ones (left by attempts that never recorded an outcome).
const sweepAbove = 4096

func newLeaseTable() *leaseTable { return &leaseTable{m: map[int64]lease{}} }

// held reports whether id is leased to anyone at now.
func (t *leaseTable) held(id, now int64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	l, ok := t.m[id]
	return ok && l.until > now
}

// take leases ids to owner until until, replacing expired leases.
func (t *leaseTable) take(ids []int64, owner string, until, now int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.m) > sweepAbove {
		for id, l := range t.m {
			if l.until <= now {
				delete(t.m, id)
			}
		}
	}
	for _, id := range ids {
		t.m[id] = lease{owner: owner, until: until}
	}
}

// ownedBy reports whether owner holds a live lease on id at at (unix ms).
// An expired lease is lost even when nobody re-claimed the delivery yet, as
// on PostgreSQL: a claimer may take it at any moment, so an outcome recorded
// past the lease could count an attempt twice.
func (t *leaseTable) ownedBy(id int64, owner string, at int64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	l, ok := t.m[id]
	return ok && l.owner == owner && l.until > at
}

// drop removes the leases on ids, whoever holds them.
func (t *leaseTable) drop(ids []int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, id := range ids {
		delete(t.m, id)
	}
}

// release removes owner's leases on ids; others' are left alone.
func (t *leaseTable) release(owner string, ids []int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, id := range ids {
		if l, ok := t.m[id]; ok && l.owner == owner {
			delete(t.m, id)
		}
	}
}

// until returns when the lease on id ends; ok is false when id is not leased.
func (t *leaseTable) until(id int64) (until int64, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l, ok := t.m[id]
	return l.until, ok
}
