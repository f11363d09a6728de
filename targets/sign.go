package targets

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"
)

// secretPrefix marks a Standard Webhooks secret.
const secretPrefix = "whsec_"

// Signer signs requests per the Standard Webhooks specification: the
// signature is "v1,<base64 HMAC-SHA256 of id.timestamp.body>" keyed with the
// base64-decoded part of the secret after "whsec_".
type Signer struct {
	key []byte
}

// NewSigner parses a "whsec_<base64>" secret. Errors never quote the secret.
func NewSigner(secret string) (*Signer, error) {
	rest, ok := strings.CutPrefix(secret, secretPrefix)
	if !ok {
		return nil, errors.New(`must start with "whsec_"`)
	}
	key, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		return nil, errors.New(`the part after "whsec_" is not valid base64`)
	}
	if len(key) == 0 {
		return nil, errors.New(`the part after "whsec_" is empty`)
	}
	return &Signer{key: key}, nil
}

// Sign returns the webhook-signature header value for one attempt.
func (s *Signer) Sign(id string, ts time.Time, body []byte) string {
	mac := hmac.New(sha256.New, s.key)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write(strconv.AppendInt(nil, ts.Unix(), 10))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// String hides the key.
func (s *Signer) String() string { return "Signer{redacted}" }

// GoString hides the key.
func (s *Signer) GoString() string { return s.String() }
