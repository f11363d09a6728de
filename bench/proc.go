package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// buildRelay compiles ./cmd/wamm-relay into dir (CGO off, as shipped).
func buildRelay(dir string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "wamm-relay")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/wamm-relay")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build relay: %w: %s", err, out)
	}
	return bin, nil
}

// moduleRoot finds the directory of go.mod from the working directory up.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("find module root: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("find module root: run the bench from inside the wamm-relay module, or pass --relay-bin")
	}
	return filepath.Dir(mod), nil
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr, nil
}

// proc is a system under test running as a child process.
type proc struct {
	name    string
	cmd     *exec.Cmd
	addr    string
	logPath string
	pgApp   string // the relay's application_name on --store postgres
	exited  chan struct{}
	waitErr error

	rssMax  atomic.Int64 // largest sampled VmRSS, bytes
	stopRSS chan struct{}
	rssDone sync.WaitGroup
}

// startProc starts bin with args, its output going to logPath, and waits
// until GET http://addr+readyPath answers 200.
func startProc(ctx context.Context, name, bin string, args []string, env []string, addr, readyPath, logPath string) (*proc, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create %s log: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, addr: addr, logPath: logPath, exited: make(chan struct{}), stopRSS: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		_ = logFile.Close()
		close(p.exited)
	}()
	p.rssDone.Add(1)
	go p.sampleRSS()

	deadline := time.Now().Add(60 * time.Second)
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get("http://" + addr + readyPath)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		select {
		case <-p.exited:
			return nil, fmt.Errorf("%s exited before it was ready (%v); log %s:\n%s", name, p.waitErr, logPath, tail(logPath))
		case <-ctx.Done():
			_ = p.stop()
			return nil, fmt.Errorf("wait for %s: %w", name, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = p.stop()
			return nil, fmt.Errorf("%s not ready after 60s; log %s:\n%s", name, logPath, tail(logPath))
		}
	}
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// sampleRSS keeps the largest VmRSS seen, every 50 ms.
func (p *proc) sampleRSS() {
	defer p.rssDone.Done()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		if v, err := procStatus(p.pid(), "VmRSS"); err == nil && v > p.rssMax.Load() {
			p.rssMax.Store(v)
		}
		select {
		case <-p.stopRSS:
			return
		case <-p.exited:
			return
		case <-t.C:
		}
	}
}

// resetPeak zeroes the sampled maximum and the kernel's VmHWM (writing 5
// to clear_refs), so the next peak covers only what follows.
func (p *proc) resetPeak() {
	_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p.pid()), []byte("5"), 0)
	p.rssMax.Store(0)
}

// peak returns the process's peak resident set: the kernel's VmHWM, or the
// sampled maximum when that is larger or VmHWM cannot be read.
func (p *proc) peak() int64 {
	hwm, _ := procStatus(p.pid(), "VmHWM")
	return max(hwm, p.rssMax.Load())
}

// cpuTime returns the CPU time (user + system) the process has used so far.
func (p *proc) cpuTime() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid()))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces: state is field 3, utime 14 and stime 15.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / clockTicks
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// stop sends SIGTERM and waits up to 30 s, then kills.
func (p *proc) stop() error {
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(30 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	}
	select {
	case <-p.stopRSS:
	default:
		close(p.stopRSS)
	}
	p.rssDone.Wait()
	var ee *exec.ExitError
	if p.waitErr != nil && !errors.As(p.waitErr, &ee) {
		return fmt.Errorf("stop %s: %w", p.name, p.waitErr)
	}
	if ee != nil && ee.ExitCode() != 0 {
		return fmt.Errorf("stop %s: exit code %d; log %s:\n%s", p.name, ee.ExitCode(), p.logPath, tail(p.logPath))
	}
	return nil
}

// procStatus reads one "Key:  N kB" line of /proc/<pid>/status, in bytes.
func procStatus(pid int, key string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != key {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			break
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, err
		}
		return n << 10, nil
	}
	return 0, fmt.Errorf("%s not in /proc/%d/status", key, pid)
}

// tail returns the last lines of a log file for error messages.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}
