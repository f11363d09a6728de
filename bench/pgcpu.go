package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// With --store postgres the relay's process CPU leaves out the server's,
// which runs on the same cores. pgMeter measures the server over one
// system's part of a scenario, two ways:
//
//   - all of it: the postmaster's own time, plus its cutime/cstime (every
//     child it has reaped: backends that exited), plus the live children's
//     utime/stime. This is exact for the server, but counts whatever else
//     uses it at the time (other test suites on this machine do).
//   - the relay's share: the backends whose application_name is this run's
//     (the bench gives the relay a unique one; parallel workers by their
//     leader), plus the shared background processes (checkpointer,
//     background writer, walwriter, autovacuum...), which other clients'
//     writes also keep busy. Backends are found in pg_stat_activity every
//     pgPollEvery and read from /proc; a backend that exits loses what it
//     used since the last poll (the relay's pool rarely closes any).
type pgMeter struct {
	conn       *pgx.Conn
	app        string
	postmaster int
	started    time.Time
	server0    time.Duration

	mu    sync.Mutex
	procs map[int]*pgProc
	first bool

	stop chan struct{}
	done chan struct{}
}

// pgProc is one server process seen during the part.
type pgProc struct {
	relay      bool
	base, last time.Duration
}

// pgCPU is what a pgMeter measured over one part.
type pgCPU struct {
	Seconds    float64 `json:"window_seconds"`
	Server     float64 `json:"server_cpu_seconds"`
	Relay      float64 `json:"relay_backends_cpu_seconds"`
	Background float64 `json:"background_cpu_seconds"`
}

const pgPollEvery = 200 * time.Millisecond

// startPGMeter connects to the server of dsn, finds its postmaster (the
// parent of its own backend, so it is the right server even with several
// clusters on the machine) and starts polling. app is the relay's
// application_name; empty when the part has no relay.
func startPGMeter(ctx context.Context, dsn, app string) (*pgMeter, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse postgres dsn: %w", err)
	}
	cfg.RuntimeParams["application_name"] = "wamm-relay-bench-meter"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	var backend int
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&backend); err != nil {
		_ = conn.Close(ctx)
		return nil, fmt.Errorf("read backend pid: %w", err)
	}
	st, err := readStat(backend)
	if err != nil {
		_ = conn.Close(ctx)
		return nil, fmt.Errorf("find the postgres server's processes (is it on this machine?): %w", err)
	}
	m := &pgMeter{conn: conn, app: app, postmaster: st.ppid, procs: map[int]*pgProc{}, first: true,
		stop: make(chan struct{}), done: make(chan struct{})}
	m.started = time.Now()
	if m.server0, err = m.serverCPU(); err != nil {
		_ = conn.Close(ctx)
		return nil, err
	}
	if err := m.poll(ctx); err != nil {
		_ = conn.Close(ctx)
		return nil, err
	}
	go m.loop(ctx)
	return m, nil
}

func (m *pgMeter) loop(ctx context.Context) {
	defer close(m.done)
	t := time.NewTicker(pgPollEvery)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-ctx.Done():
			return
		case <-t.C:
			// A failed poll only loses precision: the next one, or the
			// final one, reads the same processes again.
			_ = m.poll(ctx)
		}
	}
}

// poll reads the CPU time of every server process pg_stat_activity lists
// that belongs to the relay or to the server's shared background work.
func (m *pgMeter) poll(ctx context.Context) error {
	rows, err := m.conn.Query(ctx, `
		WITH relay AS (SELECT pid FROM pg_stat_activity WHERE $1 <> '' AND application_name = $1)
		SELECT pid, pid IN (SELECT pid FROM relay) OR coalesce(leader_pid IN (SELECT pid FROM relay), false)
		FROM pg_stat_activity
		WHERE pid IN (SELECT pid FROM relay) OR leader_pid IN (SELECT pid FROM relay)
			OR backend_type NOT IN ('client backend', 'parallel worker', 'walsender')`, m.app)
	if err != nil {
		return fmt.Errorf("list postgres processes: %w", err)
	}
	type seen struct {
		pid   int
		relay bool
	}
	var list []seen
	for rows.Next() {
		var s seen
		if err := rows.Scan(&s.pid, &s.relay); err != nil {
			rows.Close()
			return fmt.Errorf("list postgres processes: %w", err)
		}
		list = append(list, s)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list postgres processes: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range list {
		st, err := readStat(s.pid)
		if err != nil || st.ppid != m.postmaster {
			continue // exited since the query
		}
		p, ok := m.procs[s.pid]
		if !ok {
			// Alive at the start: only what it uses from now on counts.
			// Born since: all of it does.
			p = &pgProc{relay: s.relay}
			if m.first {
				p.base = st.cpu
			}
			m.procs[s.pid] = p
		}
		p.last = st.cpu
	}
	m.first = false
	return nil
}

// serverCPU is the CPU time of the whole server so far: the postmaster,
// the children it has reaped, and the live ones.
func (m *pgMeter) serverCPU() (time.Duration, error) {
	pm, err := readStat(m.postmaster)
	if err != nil {
		return 0, fmt.Errorf("read postmaster: %w", err)
	}
	total := pm.cpu + pm.children
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return 0, fmt.Errorf("list processes: %w", err)
	}
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		if st, err := readStat(pid); err == nil && st.ppid == m.postmaster {
			total += st.cpu
		}
	}
	return total, nil
}

// finish polls a last time, stops and returns the part's figures.
func (m *pgMeter) finish(ctx context.Context) (pgCPU, error) {
	close(m.stop)
	<-m.done
	defer m.conn.Close(context.WithoutCancel(ctx))
	if err := m.poll(ctx); err != nil {
		return pgCPU{}, err
	}
	server, err := m.serverCPU()
	if err != nil {
		return pgCPU{}, err
	}
	out := pgCPU{Seconds: time.Since(m.started).Seconds(), Server: (server - m.server0).Seconds()}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range m.procs {
		if p.relay {
			out.Relay += (p.last - p.base).Seconds()
		} else {
			out.Background += (p.last - p.base).Seconds()
		}
	}
	return out, nil
}

// procStat is what the bench reads of /proc/<pid>/stat.
type procStat struct {
	ppid     int
	cpu      time.Duration // utime + stime
	children time.Duration // cutime + cstime: reaped children
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, fmt.Errorf("read /proc/%d/stat: %w", pid, err)
	}
	// The command name is in parentheses and may hold spaces; after it,
	// state is field 3, ppid 4, utime 14, stime 15, cutime 16, cstime 17.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f))
	}
	n := func(i int) int64 { v, _ := strconv.ParseInt(f[i], 10, 64); return v }
	tick := func(v int64) time.Duration { return time.Duration(v) * time.Second / clockTicks }
	return procStat{ppid: int(n(1)), cpu: tick(n(11) + n(12)), children: tick(n(13) + n(14))}, nil
}

// pgRows adds the PostgreSQL server's CPU to a scenario's table, when it
// was measured: the server over each part, and the relay's CPU per
// delivered event with the server's added, against the baseline's own
// (which has no server to add).
func pgRows(b *bytes.Buffer, rs []result, base *result) {
	if !slices.ContainsFunc(rs, func(x result) bool { return x.PG != nil }) {
		return
	}
	line := func(name string, cell func(*result) string, ratioOf func(*result) float64) {
		l := "| " + name + " |"
		for i := range rs {
			l += " " + cell(&rs[i]) + " |"
		}
		if base != nil {
			for i := range rs {
				if rs[i].System == sysBaseline {
					continue
				}
				if ratioOf == nil {
					l += " |"
				} else {
					l += " " + ratio(ratioOf(&rs[i]), ratioOf(base)) + " |"
				}
			}
		}
		fmt.Fprintln(b, l)
	}
	perEvent := func(x *result, cpu float64) float64 {
		if x.EventsComplete == 0 {
			return 0
		}
		return cpu * 1e6 / float64(x.EventsComplete)
	}
	// The relay's own and its server's CPU; the other systems' own only.
	withServer := func(all bool) func(*result) float64 {
		return func(x *result) float64 {
			if x.PG == nil || x.Store != "postgres" {
				return x.CPUPerEvent
			}
			if all {
				return x.CPUPerEvent + perEvent(x, x.PG.Server)
			}
			return x.CPUPerEvent + perEvent(x, x.PG.Relay+x.PG.Background)
		}
	}
	us := func(f float64) string { return fmt.Sprintf("%.0f µs", f) }
	line("PostgreSQL server CPU in the part: all / relay's backends / background", func(x *result) string {
		if x.PG == nil {
			return "n/a"
		}
		return fmt.Sprintf("%.1f / %.1f / %.1f s in %.1f s", x.PG.Server, x.PG.Relay, x.PG.Background, x.PG.Seconds)
	}, nil)
	serverOnly := func(all bool) func(*result) string {
		return func(x *result) string {
			if x.PG == nil || x.Store != "postgres" {
				return "n/a"
			}
			return us(withServer(all)(x) - x.CPUPerEvent)
		}
	}
	line("PostgreSQL CPU per delivered event: relay's backends + background", serverOnly(false), nil)
	line("PostgreSQL CPU per delivered event: all server processes", serverOnly(true), nil)
	line("relay + server CPU per delivered event (relay's backends + background)", func(x *result) string { return us(withServer(false)(x)) }, withServer(false))
	line("relay + server CPU per delivered event (all server processes)", func(x *result) string { return us(withServer(true)(x)) }, withServer(true))
}
