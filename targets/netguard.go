package targets

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"syscall"
)

// PrivateAddressError is the refusal of a target whose DenyPrivateNetworks
// is set to connect to a non-public address. It is checked on the address
// actually dialed, after DNS resolution, so a name that resolves (or is
// rebound) to a private address is refused too.
type PrivateAddressError struct {
	Addr netip.Addr
}

func (e *PrivateAddressError) Error() string {
	return fmt.Sprintf("destination %s is a private address (deny_private_networks)", e.Addr)
}

// deniedPrefixes are the destinations deny_private_networks refuses:
// loopback, RFC 1918 and unique-local, link-local (with the cloud metadata
// address 169.254.169.254), "this network"/unspecified and CGNAT.
var deniedPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),      // "this network"; 0.0.0.0 reaches the host itself
	netip.MustParsePrefix("127.0.0.0/8"),    // loopback
	netip.MustParsePrefix("10.0.0.0/8"),     // RFC 1918
	netip.MustParsePrefix("172.16.0.0/12"),  // RFC 1918
	netip.MustParsePrefix("192.168.0.0/16"), // RFC 1918
	netip.MustParsePrefix("169.254.0.0/16"), // link-local, cloud metadata
	netip.MustParsePrefix("100.64.0.0/10"),  // CGNAT (RFC 6598)
	netip.MustParsePrefix("::/128"),         // unspecified
	netip.MustParsePrefix("::1/128"),        // loopback
	netip.MustParsePrefix("fc00::/7"),       // unique local
	netip.MustParsePrefix("fe80::/10"),      // link-local
}

// isPrivateAddr reports whether deny_private_networks refuses a. An
// IPv4-mapped IPv6 address (::ffff:127.0.0.1) is judged as the IPv4 address
// it carries; an invalid address is refused.
func isPrivateAddr(a netip.Addr) bool {
	if !a.IsValid() {
		return true
	}
	a = a.Unmap()
	for _, p := range deniedPrefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// denyPrivateControl is a net.Dialer Control function: it runs once the
// name is resolved, for each address the dialer tries, before connecting.
func denyPrivateControl(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("deny_private_networks: cannot check dialed address %q: %w", address, err)
	}
	if isPrivateAddr(ap.Addr()) {
		return &PrivateAddressError{Addr: ap.Addr().Unmap()}
	}
	return nil
}

// guardedDialer dials a target's connections. With deny set, every address
// is checked, except the HTTP proxy's: the operator chose it (from the
// environment), and through it the relay never dials the target itself.
// Through a proxy only an IP-literal target host can be checked, which
// guardProxy does.
type guardedDialer struct {
	plain   *net.Dialer
	guarded *net.Dialer
	// proxies holds the host:port of every proxy the transport was told to
	// use; their dials go unchecked.
	proxies sync.Map
}

func newGuardedDialer(base net.Dialer) *guardedDialer {
	g := &guardedDialer{plain: &base}
	guarded := base
	guarded.Control = denyPrivateControl
	g.guarded = &guarded
	return g
}

func (g *guardedDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if _, proxy := g.proxies.Load(addr); proxy {
		return g.plain.DialContext(ctx, network, addr)
	}
	return g.guarded.DialContext(ctx, network, addr)
}

// guardProxy wraps a transport's Proxy function: it records the proxies it
// returns so their dials are exempt, and refuses an IP-literal private
// target host that would otherwise reach the proxy unchecked.
func (g *guardedDialer) guardProxy(next func(*http.Request) (*url.URL, error)) func(*http.Request) (*url.URL, error) {
	return func(req *http.Request) (*url.URL, error) {
		u, err := next(req)
		if err != nil || u == nil {
			return u, err
		}
		if a, perr := netip.ParseAddr(req.URL.Hostname()); perr == nil && isPrivateAddr(a) {
			return nil, &PrivateAddressError{Addr: a.Unmap()}
		}
		g.proxies.Store(proxyAddr(u), struct{}{})
		return u, nil
	}
}

// proxyAddr is the host:port the transport dials for proxy u.
func proxyAddr(u *url.URL) string {
	port := u.Port()
	if port == "" {
		switch u.Scheme {
		case "https":
			port = "443"
		case "socks5", "socks5h":
			port = "1080"
		default:
			port = "80"
		}
	}
	return net.JoinHostPort(u.Hostname(), port)
}
