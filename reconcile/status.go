package reconcile

import (
	"time"
)

// Status is what a channel's reconciler reports to operators (the admin
// API's /api/v1/channels); the JSON names are that endpoint's.
type Status struct {
	Channel string `json:"-"`
	// Leader: this instance holds the channel's reconcile lock.
	Leader        bool      `json:"leader"`
	LastPassAt    time.Time `json:"last_pass_at,omitzero"`
	LastSuccessAt time.Time `json:"last_success_at,omitzero"`
	// LastError is the error of the last pass, "" when it succeeded.
	LastError string `json:"last_error,omitempty"`
	Passes    int64  `json:"passes"`
	// Recovered counts the events this instance ingested for the webhooks
	// that missed them; Baseline the history it recorded as seen.
	Recovered int64  `json:"recovered"`
	Baseline  int64  `json:"baseline"`
	GapsOpen  int    `json:"gaps_open"`
	Interval  string `json:"interval"`
	// BaselineAt is when the channel's first poll recorded its baseline.
	BaselineAt time.Time `json:"baseline_at,omitzero"`
}

// Status returns the reconciler's state; it never waits for a pass.
func (r *Reconciler) Status() Status {
	r.statusMu.Lock()
	defer r.statusMu.Unlock()
	st := r.status
	st.Channel = r.opts.Channel
	if st.Interval == "" {
		st.Interval = r.opts.Interval.String()
	}
	return st
}

// Channel names the channel this reconciler polls.
func (r *Reconciler) Channel() string { return r.opts.Channel }

// noteStatus folds a finished pass or promote step into Status.
func (r *Reconciler) noteStatus(rep Report, err error, now time.Time, pass bool) {
	r.statusMu.Lock()
	defer r.statusMu.Unlock()
	st := &r.status
	st.Leader = r.leader
	st.Recovered += int64(rep.EnqueuedMsgs + rep.EnqueuedStates)
	st.Baseline += int64(rep.Baseline)
	st.Interval = r.interval.String()
	if r.haveBase {
		st.BaselineAt = r.base.RecordedAt
	}
	if !pass {
		return
	}
	st.Passes++
	st.LastPassAt = now
	if err != nil {
		st.LastError = err.Error()
		return
	}
	st.LastError = ""
	if !rep.NotLeader {
		st.LastSuccessAt = now
		st.GapsOpen = rep.GapsOpen
	}
}

// Grace is the channel's grace period.
func (r *Reconciler) Grace() time.Duration { return r.opts.Grace }

// Checker is the channel check the reconciler runs; nil when none.
func (r *Reconciler) Checker() any { return r.opts.Checker }
