package sqlite

import (
	"context"
	"errors"
	"time"
)

// PauseTarget pauses target from at on.
func (s *Store) PauseTarget(ctx context.Context, target string, at time.Time) error {
	if err := s.open("pause target"); err != nil {
		return err
	}
	if target == "" {
		return errors.New("pause target: empty name")
	}
	if _, err := s.w.ExecContext(ctx, `INSERT INTO target_pauses (target, paused_at) VALUES (?, ?)
		ON CONFLICT (target) DO NOTHING`, target, ms(at)); err != nil {
		return s.fail("pause target", err)
	}
	return nil
}

// ResumeTarget lifts target's pause.
func (s *Store) ResumeTarget(ctx context.Context, target string) error {
	if err := s.open("resume target"); err != nil {
		return err
	}
	if _, err := s.w.ExecContext(ctx, `DELETE FROM target_pauses WHERE target = ?`, target); err != nil {
		return s.fail("resume target", err)
	}
	return nil
}

// PausedTargets lists the paused targets by name.
func (s *Store) PausedTargets(ctx context.Context) ([]string, error) {
	if err := s.open("list paused targets"); err != nil {
		return nil, err
	}
	rows, err := s.r.QueryContext(ctx, `SELECT target FROM target_pauses ORDER BY target`)
	if err != nil {
		return nil, s.fail("list paused targets", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return nil, s.fail("list paused targets", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail("list paused targets", err)
	}
	return out, nil
}
