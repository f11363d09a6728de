package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/wamm-relay/wamm-relay/store"
)

// PauseTarget pauses target from at on.
func (s *Store) PauseTarget(ctx context.Context, target string, at time.Time) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	if target == "" {
		return errors.New("pause target: empty name")
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO target_pauses (target, paused_at) VALUES ($1, $2)
		ON CONFLICT (target) DO NOTHING`, target, at); err != nil {
		return fmt.Errorf("pause target: %w", err)
	}
	return nil
}

// ResumeTarget lifts target's pause.
func (s *Store) ResumeTarget(ctx context.Context, target string) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM target_pauses WHERE target = $1`, target); err != nil {
		return fmt.Errorf("resume target: %w", err)
	}
	return nil
}

// PausedTargets lists the paused targets by name.
func (s *Store) PausedTargets(ctx context.Context) ([]string, error) {
	if s.closed.Load() {
		return nil, store.ErrClosed
	}
	rows, err := s.pool.Query(ctx, `SELECT target FROM target_pauses ORDER BY target`)
	if err != nil {
		return nil, fmt.Errorf("list paused targets: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return nil, fmt.Errorf("list paused targets: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list paused targets: %w", err)
	}
	return out, nil
}
