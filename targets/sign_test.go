package targets

import (
	"net/http"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"
)

func TestSignerMatchesSpecVector(t *testing.T) {
	// The test vector of the Standard Webhooks reference libraries.
	s, err := NewSigner("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	require.NoError(t, err)
	got := s.Sign("msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	require.Equal(t, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", got)
}

func TestSignerVerifiesWithReferenceLibrary(t *testing.T) {
	const secret = "whsec_c2lnbmluZy1zZWNyZXQtZm9yLXRlc3Rz"
	s, err := NewSigner(secret)
	require.NoError(t, err)
	wh, err := standardwebhooks.NewWebhook(secret)
	require.NoError(t, err)

	body := []byte(`{"tip":"msg","msg_data":{"msg_id":42}}`)
	now := time.Now()
	h := http.Header{}
	h.Set("webhook-id", "state:42:not%20sent")
	h.Set("webhook-timestamp", sprintf("%d", now.Unix()))
	h.Set("webhook-signature", s.Sign("state:42:not%20sent", now, body))
	require.NoError(t, wh.Verify(body, h))

	// One changed byte in the body breaks it.
	require.Error(t, wh.Verify([]byte(`{"tip":"msg","msg_data":{"msg_id":43}}`), h))
	require.NotContains(t, sprintf("%v %+v %#v", s, s, s), "c2lnbmluZy1zZWNyZXQ")
}
