package testutil

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// TCPProxy forwards TCP connections to a target (a database, say) so a test
// can cut it off. Down drops every connection and refuses (accepts and
// closes) new ones until Up. Freeze turns the current connections half-open:
// they stay up but silently drop what they carry, while new ones work.
type TCPProxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]*atomic.Bool // value: frozen
	wg     sync.WaitGroup
}

// NewTCPProxy listens on 127.0.0.1 and forwards to target until the test ends.
func NewTCPProxy(tb testing.TB, target string) *TCPProxy {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("tcp proxy: listen: %v", err)
	}
	p := &TCPProxy{l: l, target: target, conns: map[net.Conn]*atomic.Bool{}}
	p.wg.Add(1)
	go p.accept()
	tb.Cleanup(func() {
		_ = l.Close()
		p.Down()
		p.wg.Wait()
	})
	return p
}

// Addr is the proxy's host:port.
func (p *TCPProxy) Addr() string { return p.l.Addr().String() }

func (p *TCPProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		if p.isDown() {
			_ = c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		frozen := new(atomic.Bool)
		p.mu.Lock()
		if p.down { // cut while dialing
			p.mu.Unlock()
			_ = c.Close()
			_ = up.Close()
			continue
		}
		p.conns[c], p.conns[up] = frozen, frozen
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, up, frozen)
		go p.pipe(up, c, frozen)
	}
}

func (p *TCPProxy) isDown() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.down
}

func (p *TCPProxy) pipe(dst, src net.Conn, frozen *atomic.Bool) {
	defer p.wg.Done()
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !frozen.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Down cuts the target off: open connections are closed, new ones refused.
func (p *TCPProxy) Down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		_ = c.Close()
		delete(p.conns, c)
	}
}

// Up lets new connections through again.
func (p *TCPProxy) Up() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

// Freeze makes the open connections silently drop everything they carry.
func (p *TCPProxy) Freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, frozen := range p.conns {
		frozen.Store(true)
	}
}
