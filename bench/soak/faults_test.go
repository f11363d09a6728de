package main

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestTargetFlaps(t *testing.T) {
	tg, err := startTarget("t", 0, 0)
	require.NoError(t, err)
	t.Cleanup(func() { tg.srv.Close() })
	post := func(key string) (int, error) {
		req, _ := http.NewRequest(http.MethodPost, tg.url, strings.NewReader("{}"))
		req.Header.Set("webhook-id", key)
		resp, err := (&http.Client{Timeout: 2 * time.Second}).Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}

	code, err := post("k1")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code)

	tg.failing.Store(true)
	code, err = post("k2")
	require.NoError(t, err)
	require.Equal(t, http.StatusInternalServerError, code, "a 500 flap answers 500 to everything")
	tg.failing.Store(false)

	require.NoError(t, tg.down())
	_, err = post("k3")
	require.Error(t, err, "a target that is down refuses connections")
	require.NoError(t, tg.up())
	code, err = post("k3")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code, "and serves again on the same address once up")

	require.Equal(t, map[string]int{"k1": 1, "k3": 1}, tg.snapshot(), "only 2xx answers count as deliveries")
}

func TestTCPProxyCut(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { echo.Close() })
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }()
		}
	}()
	p, err := newTCPProxy(echo.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })

	roundTrip := func(c net.Conn) error {
		if _, err := c.Write([]byte("ping")); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 4)
		_, err := io.ReadFull(c, buf)
		return err
	}
	c, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, roundTrip(c))

	require.Equal(t, 1, p.Cut())
	require.Error(t, roundTrip(c), "a cut connection is closed")

	c2, err := net.Dial("tcp", p.Addr())
	require.NoError(t, err)
	defer c2.Close()
	require.NoError(t, roundTrip(c2), "new connections go through after a cut")
}
