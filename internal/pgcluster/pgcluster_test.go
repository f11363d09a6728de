package pgcluster

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestCrashAndRestartKeepsCommittedRows(t *testing.T) {
	c, err := New(t.TempDir() + "/pg")
	if errors.Is(err, ErrUnavailable) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Destroy() })
	if err := c.Start(); err != nil {
		t.Fatalf("%v\n%s", err, c.Log())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	exec := func(sql string) error {
		conn, err := pgx.Connect(ctx, URL(c.Addr()))
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, sql)
		return err
	}
	if err := exec("CREATE TABLE t (x int); INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop("immediate"); err != nil {
		t.Fatal(err)
	}
	if err := exec("SELECT 1"); err == nil {
		t.Fatal("a stopped server accepted a query")
	}
	if err := c.Start(); err != nil {
		t.Fatalf("%v\n%s", err, c.Log())
	}
	if err := exec("DO $$ BEGIN IF (SELECT count(*) FROM t) <> 1 THEN RAISE 'row lost'; END IF; END $$"); err != nil {
		t.Fatalf("after crash recovery: %v", err)
	}
}
