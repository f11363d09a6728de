package sqlite

import (
	"context"
	"time"

	"github.com/wamm-relay/wamm-relay/event"
	"github.com/wamm-relay/wamm-relay/store"
)

// pruneChunk is how many events one prune statement deletes, so a large
// prune holds the write lock in short slices and ingests slip in between.
const pruneChunk = 1000

// KnownMessages reports, for each id of msgIDs with a stored msg or
// msg_state event, whether the msg event is stored and which states were
// relayed, each once, in the order they were stored.
func (s *Store) KnownMessages(ctx context.Context, channel string, msgIDs []string) (map[string]store.KnownMessage, error) {
	if err := s.open("look up known messages"); err != nil {
		return nil, err
	}
	seen := make(map[string]bool, len(msgIDs))
	ids := make([]string, 0, len(msgIDs))
	for _, id := range msgIDs {
		if id != "" && !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	out := map[string]store.KnownMessage{}
	for _, chunk := range chunks(ids) {
		args := make([]any, 0, len(chunk)+3)
		args = append(args, string(event.KindMsg), string(event.KindMsgState), channelName(channel))
		for _, id := range chunk {
			args = append(args, id)
		}
		rows, err := s.r.QueryContext(ctx, `
			SELECT msg_id, kind, state FROM events
			WHERE kind IN (?, ?) AND channel = ? AND msg_id IN (`+inList(len(chunk))+`)
			ORDER BY id`, args...)
		if err != nil {
			return nil, s.fail("look up known messages", err)
		}
		for rows.Next() {
			var msgID, kind, state string
			if err := rows.Scan(&msgID, &kind, &state); err != nil {
				_ = rows.Close()
				return nil, s.fail("scan known message", err)
			}
			m := out[msgID]
			if event.Kind(kind) == event.KindMsg {
				m.MsgStored = true
			}
			if state != "" && !contains(m.States, state) {
				m.States = append(m.States, state)
			}
			out[msgID] = m
		}
		err = rows.Err()
		_ = rows.Close()
		if err != nil {
			return nil, s.fail("look up known messages", err)
		}
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

func contains(v []string, s string) bool {
	for _, x := range v {
		if x == s {
			return true
		}
	}
	return false
}

// HasEvents reports whether an event was ever stored: the events table is
// not empty, or its AUTOINCREMENT counter shows that pruned events once were.
func (s *Store) HasEvents(ctx context.Context) (bool, error) {
	if err := s.open("check for events"); err != nil {
		return false, err
	}
	var has bool
	err := s.r.QueryRowContext(ctx, `
		SELECT EXISTS (SELECT 1 FROM events)
		    OR EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'events' AND seq > 0)`).Scan(&has)
	if err != nil {
		return false, s.fail("check for events", err)
	}
	return has, nil
}

// Prune deletes the events received before `before` none of whose
// deliveries is pending, together with their deliveries (by cascade), in
// chunks of pruneChunk events per statement. It returns how many events went.
func (s *Store) Prune(ctx context.Context, before time.Time) (int, error) {
	if err := s.open("prune events"); err != nil {
		return 0, err
	}
	total := 0
	for {
		res, err := s.w.ExecContext(ctx, `
			DELETE FROM events WHERE id IN (
				SELECT e.id FROM events e
				WHERE e.received_at < ?
				  AND NOT EXISTS (
					SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.status = 'pending')
				LIMIT ?)`, ms(before), pruneChunk)
		if err != nil {
			return total, s.fail("prune events", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, s.fail("prune events", err)
		}
		total += int(n)
		if n < pruneChunk {
			return total, nil
		}
	}
}
