package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/wamm-relay/wamm-relay/store"
)

// Baseline returns channel's first-run baseline, if one was recorded.
func (s *Store) Baseline(ctx context.Context, channel string) (store.Baseline, bool, error) {
	if err := s.open("read baseline"); err != nil {
		return store.Baseline{}, false, err
	}
	b := store.Baseline{Channel: channelName(channel)}
	var at int64
	err := s.r.QueryRowContext(ctx, `
		SELECT recorded_at, high_in, high_out, adopted, backfill, polled_in, polled_out
		FROM reconcile_baselines WHERE channel = ?`, b.Channel).
		Scan(&at, &b.HighIn, &b.HighOut, &b.Adopted, &b.Backfill, &b.PolledIn, &b.PolledOut)
	if errors.Is(err, sql.ErrNoRows) {
		return store.Baseline{}, false, nil
	}
	if err != nil {
		return store.Baseline{}, false, s.fail("read baseline", err)
	}
	b.RecordedAt = time.UnixMilli(at)
	return b, true, nil
}

// SaveBaseline records b unless its channel has a baseline, and returns the
// stored one.
func (s *Store) SaveBaseline(ctx context.Context, b store.Baseline) (store.Baseline, error) {
	if err := s.open("save baseline"); err != nil {
		return store.Baseline{}, err
	}
	b.Channel = channelName(b.Channel)
	if b.RecordedAt.IsZero() {
		b.RecordedAt = time.Now()
	}
	_, err := s.w.ExecContext(ctx, `
		INSERT INTO reconcile_baselines (channel, recorded_at, high_in, high_out, adopted, backfill)
		VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (channel) DO NOTHING`,
		b.Channel, ms(b.RecordedAt), b.HighIn, b.HighOut, b.Adopted, b.Backfill)
	if err != nil {
		return store.Baseline{}, s.fail("save baseline", err)
	}
	stored, ok, err := s.Baseline(ctx, b.Channel)
	if err != nil {
		return store.Baseline{}, err
	}
	if !ok {
		return store.Baseline{}, fmt.Errorf("save baseline of %s: not found after insert", b.Channel)
	}
	return stored, nil
}

const gapColumns = `id, channel, chat, reason, direction, after_msg_id, after_time, before_msg_id, before_time,
	detected_at, updated_at, resolved_at, note`

func scanGap(sc interface{ Scan(...any) error }) (store.Gap, error) {
	var g store.Gap
	var detected, updated int64
	var resolved sql.NullInt64
	err := sc.Scan(&g.ID, &g.Channel, &g.Chat, &g.Reason, &g.Direction, &g.AfterMsgID, &g.AfterTime,
		&g.BeforeMsgID, &g.BeforeTime, &detected, &updated, &resolved, &g.Note)
	if err != nil {
		return store.Gap{}, err
	}
	g.DetectedAt, g.UpdatedAt = time.UnixMilli(detected), time.UnixMilli(updated)
	g.ResolvedAt = fromMS(resolved)
	return g, nil
}

// SavePolled records the marks of the reconciler's last poll taken in on
// channel's baseline; "" keeps a direction's mark.
func (s *Store) SavePolled(ctx context.Context, channel, in, out string) error {
	if err := s.open("save polled marks"); err != nil {
		return err
	}
	res, err := s.w.ExecContext(ctx, `
		UPDATE reconcile_baselines
		SET polled_in = CASE WHEN ? = '' THEN polled_in ELSE ? END,
		    polled_out = CASE WHEN ? = '' THEN polled_out ELSE ? END
		WHERE channel = ?`, in, in, out, out, channelName(channel))
	if err != nil {
		return s.fail("save polled marks", err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("save polled marks of %s: no baseline: %w", channelName(channel), store.ErrNotFound)
	}
	return nil
}

// RecordGap stores g as an open gap, or widens the open one it repeats.
func (s *Store) RecordGap(ctx context.Context, g store.Gap) (store.Gap, bool, error) {
	if err := s.open("record gap"); err != nil {
		return store.Gap{}, false, err
	}
	g.Channel = channelName(g.Channel)
	if g.DetectedAt.IsZero() {
		g.DetectedAt = time.Now()
	}
	var (
		stored  store.Gap
		created bool
	)
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		old, err := scanGap(tx.QueryRowContext(ctx, `SELECT `+gapColumns+` FROM reconcile_gaps
			WHERE channel = ? AND chat = ? AND reason = ? AND direction = ? AND resolved_at IS NULL`,
			g.Channel, g.Chat, g.Reason, g.Direction))
		switch {
		case errors.Is(err, sql.ErrNoRows):
			res, err := tx.ExecContext(ctx, `
				INSERT INTO reconcile_gaps (channel, chat, reason, direction, after_msg_id, after_time,
					before_msg_id, before_time, detected_at, updated_at, note)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				g.Channel, g.Chat, g.Reason, g.Direction, g.AfterMsgID, g.AfterTime, g.BeforeMsgID, g.BeforeTime,
				ms(g.DetectedAt), ms(g.DetectedAt), g.Note)
			if err != nil {
				return err
			}
			if g.ID, err = res.LastInsertId(); err != nil {
				return err
			}
			g.UpdatedAt = g.DetectedAt
			stored, created = g, true
			return nil
		case err != nil:
			return err
		}
		stored = store.WidenGap(old, g)
		_, err = tx.ExecContext(ctx, `
			UPDATE reconcile_gaps SET after_msg_id = ?, after_time = ?, before_msg_id = ?, before_time = ?, updated_at = ?
			WHERE id = ?`,
			stored.AfterMsgID, stored.AfterTime, stored.BeforeMsgID, stored.BeforeTime, ms(stored.UpdatedAt), old.ID)
		return err
	})
	if err != nil {
		return store.Gap{}, false, s.fail("record gap", err)
	}
	return stored, created, nil
}

// Gaps lists gaps matching f, newest first.
func (s *Store) Gaps(ctx context.Context, f store.GapFilter) ([]store.Gap, error) {
	if err := s.open("list gaps"); err != nil {
		return nil, err
	}
	var where []string
	var args []any
	if f.Channel != "" {
		where, args = append(where, "channel = ?"), append(args, f.Channel)
	}
	switch {
	case f.Open && !f.Resolved:
		where = append(where, "resolved_at IS NULL")
	case f.Resolved && !f.Open:
		where = append(where, "resolved_at IS NOT NULL")
	}
	q := `SELECT ` + gapColumns + ` FROM reconcile_gaps`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += ` ORDER BY id DESC`
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, s.fail("list gaps", err)
	}
	defer rows.Close()
	var out []store.Gap
	for rows.Next() {
		g, err := scanGap(rows)
		if err != nil {
			return nil, s.fail("scan gap", err)
		}
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail("list gaps", err)
	}
	return out, nil
}

// ResolveGap marks gap id resolved.
func (s *Store) ResolveGap(ctx context.Context, id int64, note string, at time.Time) (store.Gap, error) {
	if err := s.open("resolve gap"); err != nil {
		return store.Gap{}, err
	}
	var g store.Gap
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `
			UPDATE reconcile_gaps SET resolved_at = ?, updated_at = ?, note = ?
			WHERE id = ? AND resolved_at IS NULL`, ms(at), ms(at), note, id); err != nil {
			return err
		}
		var err error
		g, err = scanGap(tx.QueryRowContext(ctx, `SELECT `+gapColumns+` FROM reconcile_gaps WHERE id = ?`, id))
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return store.Gap{}, fmt.Errorf("resolve gap %d: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Gap{}, s.fail("resolve gap", err)
	}
	return g, nil
}

// Chats returns channel's chats with their newest stored message, most
// recently active first. The events_chat index holds (chat, channel) of
// every event with a chat, so this reads the index, not the bodies.
func (s *Store) Chats(ctx context.Context, channel, chat string, limit int) ([]store.ChatInfo, error) {
	if err := s.open("list chats"); err != nil {
		return nil, err
	}
	q := `SELECT chat, MAX(id) AS last FROM events INDEXED BY events_chat
		WHERE chat <> '' AND channel = ?`
	args := []any{channelName(channel)}
	if chat != "" {
		q += ` AND chat = ?`
		args = append(args, chat)
	}
	q += ` GROUP BY chat ORDER BY last DESC`
	if limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", limit)
	}
	q = `SELECT c.chat, COALESCE((SELECT m.msg_id FROM events m INDEXED BY events_chat
			WHERE m.chat = c.chat AND m.chat <> '' AND m.channel = ? AND m.kind = 'msg' ORDER BY m.id DESC LIMIT 1), ''),
		e.received_at
		FROM (` + q + `) c JOIN events e ON e.id = c.last ORDER BY c.last DESC`
	args = append([]any{channelName(channel)}, args...)
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, s.fail("list chats", err)
	}
	defer rows.Close()
	var out []store.ChatInfo
	for rows.Next() {
		var c store.ChatInfo
		var at int64
		if err := rows.Scan(&c.Chat, &c.LastMsgID, &at); err != nil {
			return nil, s.fail("scan chat", err)
		}
		c.LastSeenAt = time.UnixMilli(at)
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail("list chats", err)
	}
	return out, nil
}
