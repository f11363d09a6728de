package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/store"
)

// pruneChunk is how many events one Prune statement deletes, so a large
// backlog is removed in short transactions rather than one long one.
const pruneChunk = 1000

// KnownMessages reports what is stored for each of msgIDs that has a msg or
// msg_state event in channel. States are in the order they were stored, each once.
func (s *Store) KnownMessages(ctx context.Context, channel string, msgIDs []string) (map[string]store.KnownMessage, error) {
	if s.closed.Load() {
		return nil, store.ErrClosed
	}
	out := make(map[string]store.KnownMessage)
	if len(msgIDs) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, `
		SELECT msg_id, kind, state FROM events
		WHERE msg_id = ANY($1) AND msg_id <> '' AND kind IN ('msg', 'msg_state') AND channel = $2
		ORDER BY id`, msgIDs, channelName(channel))
	if err != nil {
		return nil, fmt.Errorf("look up known messages: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, kind, state string
		if err := rows.Scan(&id, &kind, &state); err != nil {
			return nil, fmt.Errorf("look up known messages: %w", err)
		}
		km := out[id]
		if event.Kind(kind) == event.KindMsg {
			km.MsgStored = true
		}
		if state != "" && !contains(km.States, state) {
			km.States = append(km.States, state)
		}
		out[id] = km
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("look up known messages: %w", err)
	}
	return out, nil
}

// channelName is the channel column's value for a channel argument.
func channelName(channel string) string {
	if channel == "" {
		return event.DefaultChannel
	}
	return channel
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// HasEvents reports whether an event was ever committed to this schema, even
// if Prune has since deleted it.
func (s *Store) HasEvents(ctx context.Context) (bool, error) {
	if s.closed.Load() {
		return false, store.ErrClosed
	}
	var ok bool
	err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM store_meta WHERE name = 'events_stored')
		OR EXISTS (SELECT 1 FROM events)`).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("check for events: %w", err)
	}
	return ok, nil
}

// Prune deletes events received before `before` that have no pending
// delivery, with their deliveries, in chunks. Rows another instance is
// pruning at the same moment are skipped, not waited for.
func (s *Store) Prune(ctx context.Context, before time.Time) (int, error) {
	if s.closed.Load() {
		return 0, store.ErrClosed
	}
	total := 0
	for {
		tag, err := s.pool.Exec(ctx, `
			DELETE FROM events WHERE id IN (
			    SELECT e.id FROM events e
			    WHERE e.received_at < $1
			      AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.status = 'pending')
			    LIMIT $2
			    FOR UPDATE SKIP LOCKED
			)`, before, pruneChunk)
		if err != nil {
			return total, fmt.Errorf("prune events: %w", err)
		}
		n := int(tag.RowsAffected())
		total += n
		if n < pruneChunk {
			return total, nil
		}
	}
}
