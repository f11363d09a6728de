package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestBlackoutRecovered is the figure as a check: a 5-minute
// blackout at 5 messages/s over 40 chats is recovered in full whether the
// relay polled through it or was down, each message within interval+grace
// of the first pass that could see it, and a chat the relay could not name
// is covered by a recorded gap.
func TestBlackoutRecovered(t *testing.T) {
	p := params{rate: 5, chats: 40, blackout: 5 * time.Minute, before: time.Minute, after: time.Minute,
		interval: 30 * time.Second, grace: 20 * time.Second, outgoing: 0.3, seed: 1, hidden: 5}
	for _, scenario := range []string{"up", "down"} {
		t.Run(scenario, func(t *testing.T) {
			res, err := run(p, scenario)
			require.NoError(t, err)
			require.Equal(t, 1500, res.Lost)
			require.Equal(t, res.Lost, res.Recovered)
			require.Equal(t, res.Chats, res.ChatsFull)
			require.LessOrEqual(t, res.MaxAfterVisible, p.interval+p.grace)
			require.Equal(t, 5, res.HiddenRecovered+res.HiddenNamed)
			require.LessOrEqual(t, res.MaxCallsPerPass, 2+50, "two msg_get_last and at most MaxChatsPerPass msg_get")
		})
	}
	res, err := run(p, "down")
	require.NoError(t, err)
	require.Equal(t, 5, res.HiddenNamed, "relay down: the unnameable chat is beyond the window, named by the gap")
}
