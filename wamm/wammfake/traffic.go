package wammfake

import (
	"context"
	"time"
)

var (
	incomingTexts = []string{
		"Good afternoon, I'm interested in your offer",
		"Hello! Is the order ready?",
		"Can I pay by card?",
		"Thanks, got it",
		"What time do you open tomorrow?",
	}
	outgoingTexts = []string{
		"Good afternoon! Yes, it is available.",
		"Your order is on its way.",
		"We open at 9:00.",
		"Thank you for your message!",
	}
	// progression is how an outgoing message's state advances in TrafficStep.
	progression = map[string]string{"sent": "delivered", "delivered": "viewed"}
)

// TrafficStep makes one random thing happen on a random chat of
// Options.Chats: a message comes in (about half the time), one goes out, or
// the oldest outgoing message not yet viewed advances a state
// (sent → delivered → viewed).
func (a *Account) TrafficStep() {
	a.mu.Lock()
	r := a.opts.Rand.Float64()
	phone := a.opts.Chats[a.opts.Rand.IntN(len(a.opts.Chats))]
	in := incomingTexts[a.opts.Rand.IntN(len(incomingTexts))]
	out := outgoingTexts[a.opts.Rand.IntN(len(outgoingTexts))]
	var advance, next string
	if r >= 0.75 {
		for _, m := range a.messages {
			if n, ok := progression[m.State]; ok && m.FromMe == 1 {
				advance, next = m.ID, n
				break
			}
		}
	}
	a.mu.Unlock()

	switch {
	case advance != "":
		_ = a.SetState(advance, next) // the id was just read from the account
	case r >= 0.5 && r < 0.75:
		a.SendOut(phone, out)
	default:
		a.Receive(phone, in)
	}
}

// RunTraffic calls TrafficStep every interval until ctx is done; it returns
// nil then.
func (a *Account) RunTraffic(ctx context.Context, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			a.TrafficStep()
		}
	}
}
