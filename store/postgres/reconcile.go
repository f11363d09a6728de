package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/wamm-relay/wamm-relay/store"
)

// Baseline returns channel's first-run baseline, if one was recorded.
func (s *Store) Baseline(ctx context.Context, channel string) (store.Baseline, bool, error) {
	if s.closed.Load() {
		return store.Baseline{}, false, store.ErrClosed
	}
	b := store.Baseline{Channel: channelName(channel)}
	err := s.pool.QueryRow(ctx, `
		SELECT recorded_at, high_in, high_out, adopted, backfill, polled_in, polled_out
		FROM reconcile_baselines WHERE channel = $1`, b.Channel).
		Scan(&b.RecordedAt, &b.HighIn, &b.HighOut, &b.Adopted, &b.Backfill, &b.PolledIn, &b.PolledOut)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Baseline{}, false, nil
	}
	if err != nil {
		return store.Baseline{}, false, fmt.Errorf("read baseline: %w", err)
	}
	return b, true, nil
}

// SavePolled records the marks of the reconciler's last poll taken in on
// channel's baseline; "" keeps a direction's mark.
func (s *Store) SavePolled(ctx context.Context, channel, in, out string) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	tag, err := s.pool.Exec(ctx, `
		UPDATE reconcile_baselines
		SET polled_in = CASE WHEN $1 = '' THEN polled_in ELSE $1 END,
		    polled_out = CASE WHEN $2 = '' THEN polled_out ELSE $2 END
		WHERE channel = $3`, in, out, channelName(channel))
	if err != nil {
		return fmt.Errorf("save polled marks: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("save polled marks of %s: no baseline: %w", channelName(channel), store.ErrNotFound)
	}
	return nil
}

// SaveBaseline records b unless its channel has a baseline, and returns the
// stored one: of two instances racing, the first commit wins.
func (s *Store) SaveBaseline(ctx context.Context, b store.Baseline) (store.Baseline, error) {
	if s.closed.Load() {
		return store.Baseline{}, store.ErrClosed
	}
	b.Channel = channelName(b.Channel)
	if b.RecordedAt.IsZero() {
		b.RecordedAt = s.now()
	}
	_, err := s.pool.Exec(ctx, `
		INSERT INTO reconcile_baselines (channel, recorded_at, high_in, high_out, adopted, backfill)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (channel) DO NOTHING`,
		b.Channel, b.RecordedAt, b.HighIn, b.HighOut, b.Adopted, b.Backfill)
	if err != nil {
		return store.Baseline{}, fmt.Errorf("save baseline: %w", err)
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

func scanGap(row pgx.Row) (store.Gap, error) {
	var g store.Gap
	var resolved *time.Time
	err := row.Scan(&g.ID, &g.Channel, &g.Chat, &g.Reason, &g.Direction, &g.AfterMsgID, &g.AfterTime,
		&g.BeforeMsgID, &g.BeforeTime, &g.DetectedAt, &g.UpdatedAt, &resolved, &g.Note)
	if err != nil {
		return store.Gap{}, err
	}
	if resolved != nil {
		g.ResolvedAt = *resolved
	}
	return g, nil
}

// RecordGap stores g as an open gap, or widens the open one it repeats. The
// open record is locked first, so two instances widening it serialise.
func (s *Store) RecordGap(ctx context.Context, g store.Gap) (store.Gap, bool, error) {
	if s.closed.Load() {
		return store.Gap{}, false, store.ErrClosed
	}
	g.Channel = channelName(g.Channel)
	if g.DetectedAt.IsZero() {
		g.DetectedAt = s.now()
	}
	var (
		stored  store.Gap
		created bool
	)
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		stored, created = store.Gap{}, false
		err := tx.QueryRow(ctx, `
			INSERT INTO reconcile_gaps (channel, chat, reason, direction, after_msg_id, after_time,
				before_msg_id, before_time, detected_at, updated_at, note)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10)
			ON CONFLICT (channel, chat, reason, direction) WHERE resolved_at IS NULL DO NOTHING
			RETURNING id`,
			g.Channel, g.Chat, g.Reason, g.Direction, g.AfterMsgID, g.AfterTime, g.BeforeMsgID, g.BeforeTime,
			g.DetectedAt, g.Note).Scan(&g.ID)
		if err == nil {
			g.UpdatedAt = g.DetectedAt
			stored, created = g, true
			return nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		old, err := scanGap(tx.QueryRow(ctx, `SELECT `+gapColumns+` FROM reconcile_gaps
			WHERE channel = $1 AND chat = $2 AND reason = $3 AND direction = $4 AND resolved_at IS NULL
			FOR UPDATE`, g.Channel, g.Chat, g.Reason, g.Direction))
		if err != nil {
			return err
		}
		stored = store.WidenGap(old, g)
		_, err = tx.Exec(ctx, `
			UPDATE reconcile_gaps SET after_msg_id = $1, after_time = $2, before_msg_id = $3, before_time = $4, updated_at = $5
			WHERE id = $6`,
			stored.AfterMsgID, stored.AfterTime, stored.BeforeMsgID, stored.BeforeTime, stored.UpdatedAt, old.ID)
		return err
	})
	if err != nil {
		return store.Gap{}, false, fmt.Errorf("record gap: %w", err)
	}
	return stored, created, nil
}

// Gaps lists gaps matching f, newest first.
func (s *Store) Gaps(ctx context.Context, f store.GapFilter) ([]store.Gap, error) {
	if s.closed.Load() {
		return nil, store.ErrClosed
	}
	var where []string
	var args []any
	if f.Channel != "" {
		args = append(args, f.Channel)
		where = append(where, fmt.Sprintf("channel = $%d", len(args)))
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
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list gaps: %w", err)
	}
	defer rows.Close()
	var out []store.Gap
	for rows.Next() {
		g, err := scanGap(rows)
		if err != nil {
			return nil, fmt.Errorf("scan gap: %w", err)
		}
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list gaps: %w", err)
	}
	return out, nil
}

// ResolveGap marks gap id resolved.
func (s *Store) ResolveGap(ctx context.Context, id int64, note string, at time.Time) (store.Gap, error) {
	if s.closed.Load() {
		return store.Gap{}, store.ErrClosed
	}
	if _, err := s.pool.Exec(ctx, `
		UPDATE reconcile_gaps SET resolved_at = $1, updated_at = $1, note = $2
		WHERE id = $3 AND resolved_at IS NULL`, at, note, id); err != nil {
		return store.Gap{}, fmt.Errorf("resolve gap %d: %w", id, err)
	}
	g, err := scanGap(s.pool.QueryRow(ctx, `SELECT `+gapColumns+` FROM reconcile_gaps WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Gap{}, fmt.Errorf("resolve gap %d: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return store.Gap{}, fmt.Errorf("resolve gap %d: %w", id, err)
	}
	return g, nil
}

// Chats returns channel's chats with their newest stored message, most
// recently active first, from the events_chat_idx index.
func (s *Store) Chats(ctx context.Context, channel, chat string, limit int) ([]store.ChatInfo, error) {
	if s.closed.Load() {
		return nil, store.ErrClosed
	}
	args := []any{channelName(channel)}
	cond := ""
	if chat != "" {
		args = append(args, chat)
		cond = " AND chat = $2"
	}
	lim := ""
	if limit > 0 {
		lim = fmt.Sprintf(" LIMIT %d", limit)
	}
	rows, err := s.pool.Query(ctx, `
		SELECT c.chat, COALESCE((SELECT m.msg_id FROM events m
				WHERE m.chat = c.chat AND m.channel = $1 AND m.kind = 'msg' ORDER BY m.id DESC LIMIT 1), ''),
			e.received_at
		FROM (SELECT chat, MAX(id) AS last FROM events WHERE chat <> '' AND channel = $1`+cond+`
			GROUP BY chat ORDER BY last DESC`+lim+`) c
		JOIN events e ON e.id = c.last ORDER BY c.last DESC`, args...)
	if err != nil {
		return nil, fmt.Errorf("list chats: %w", err)
	}
	defer rows.Close()
	var out []store.ChatInfo
	for rows.Next() {
		var c store.ChatInfo
		if err := rows.Scan(&c.Chat, &c.LastMsgID, &c.LastSeenAt); err != nil {
			return nil, fmt.Errorf("scan chat: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list chats: %w", err)
	}
	return out, nil
}
