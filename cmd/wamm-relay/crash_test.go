package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/wamm-relay/wamm-relay/internal/testutil"
)

// buildBinary compiles this command once per test into a temp dir.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "wamm-relay")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "build: %s", out)
	return bin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// process is a relay binary running as a child process.
type process struct {
	cmd  *exec.Cmd
	base string
}

func startProcess(t *testing.T, bin, configPath, addr string) *process {
	t.Helper()
	cmd := exec.Command(bin, "serve", "-config", configPath)
	logFile, err := os.OpenFile(configPath+".log", os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	require.NoError(t, err)
	t.Cleanup(func() { logFile.Close() })
	cmd.Stdout, cmd.Stderr = logFile, logFile
	require.NoError(t, cmd.Start())
	p := &process{cmd: cmd, base: "http://" + addr}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	require.Eventually(t, func() bool {
		resp, err := http.Get(p.base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 20*time.Second, 20*time.Millisecond, "relay did not become ready; log: %s", configPath+".log")
	return p
}

// TestCrashLosesNothing streams webhooks at a relay process, SIGKILLs it
// mid-stream, starts it again on the same store, and checks every webhook
// that was answered 200 reached every target at least once.
func TestCrashLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	crm, bots := testutil.NewTarget(t), testutil.NewTarget(t)
	addr := freeAddr(t)
	dir := t.TempDir()
	configPath := filepath.Join(dir, "config.toml")
	require.NoError(t, os.WriteFile(configPath, []byte(fmt.Sprintf(`
[server]
listen = %q
shutdown_timeout = "5s"
[store]
dsn = %q
[reconcile]
enabled = false
[delivery]
timeout = "2s"
backoff_initial = "10ms"
backoff_max = "100ms"
[log]
level = "warn"
[[targets]]
name = "crm"
url = %q
[[targets]]
name = "bots"
url = %q
`, addr, filepath.Join(dir, "relay.db"), crm.URL, bots.URL)), 0o600))

	first := startProcess(t, bin, configPath, addr)

	// Four senders stream webhooks with unique ids; each remembers what the
	// relay acknowledged. The relay is killed once 150 are acknowledged.
	var (
		mu       sync.Mutex
		accepted []string
		nextID   = 1000
		killed   = make(chan struct{})
		wg       sync.WaitGroup
	)
	client := &http.Client{Timeout: 5 * time.Second}
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				id := nextID
				nextID++
				mu.Unlock()
				body := fmt.Sprintf(`{"tip":"msg","msg_data":{"msg_id":%d,"from_me":0,"phone":"79001234567","state":"received"}}`, id)
				resp, err := client.Post(first.base+"/webhook", "application/json", strings.NewReader(body))
				if err != nil {
					select {
					case <-killed:
						return // the relay is gone: stop streaming
					default:
						continue
					}
				}
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					mu.Lock()
					accepted = append(accepted, fmt.Sprintf("msg:%d", id))
					mu.Unlock()
				}
			}
		}()
	}
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(accepted) >= 150
	}, 30*time.Second, 5*time.Millisecond)
	require.NoError(t, first.cmd.Process.Signal(syscall.SIGKILL))
	close(killed)
	_ = first.cmd.Wait()
	wg.Wait()

	mu.Lock()
	acked := append([]string(nil), accepted...)
	mu.Unlock()
	t.Logf("%d webhooks acknowledged before SIGKILL; crm had %d, bots had %d delivered", len(acked), len(crm.Delivered()), len(bots.Delivered()))

	// A delivery the killed process had claimed stays leased for timeout +
	// 30 s, then the idle poll (5 s) of the new process takes it over.
	startProcess(t, bin, configPath, addr)
	const takeover = 2*time.Second + 30*time.Second + 5*time.Second + 15*time.Second
	crm.WaitDelivered(t, takeover, acked...)
	bots.WaitDelivered(t, takeover, acked...)
}
