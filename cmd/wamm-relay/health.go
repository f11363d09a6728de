package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// cmdHealthcheck probes /healthz of the relay on this host, for container
// HEALTHCHECKs in images that have no shell or curl.
func cmdHealthcheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("healthcheck", stderr)
	path := fs.String("config", "", "configuration file (for server.listen)")
	url := fs.String("url", "", "probe this URL instead of http://127.0.0.1:<listen port>/healthz")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	target := *url
	if target == "" {
		cfg, err := loadConfig(*path)
		if err != nil {
			return err
		}
		_, port, err := net.SplitHostPort(cfg.Server.Listen)
		if err != nil {
			return &configError{err: fmt.Errorf("config: server.listen = %q: %w", cfg.Server.Listen, err)}
		}
		target = "http://" + net.JoinHostPort("127.0.0.1", port) + "/healthz"
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return usagef("healthcheck: %v", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s answered %s", target, resp.Status)
	}
	fmt.Fprintln(stdout, "ok")
	return nil
}
