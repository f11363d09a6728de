package ui

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Sessions issues and verifies session tokens: "<expiry>.<nonce>.<mac>",
// signed with HMAC-SHA256 under a key derived from the admin token. Nothing
// is stored to verify one, so every instance sharing the admin token accepts
// the sessions of the others, and changing the token ends every session.
type Sessions struct {
	key []byte
	ttl time.Duration
	now func() time.Time

	mu sync.Mutex
	// revoked holds the nonces logged out on this instance until they
	// expire. Another instance still accepts such a session until its
	// expiry: the price of stateless sessions, bounded by ttl.
	revoked map[string]time.Time
}

var errSession = errors.New("invalid session")

// NewSessions derives the signing key from adminToken.
func NewSessions(adminToken string, ttl time.Duration, now func() time.Time) *Sessions {
	m := hmac.New(sha256.New, []byte(adminToken))
	m.Write([]byte("wamm-relay/ui/session/v1"))
	if now == nil {
		now = time.Now
	}
	return &Sessions{key: m.Sum(nil), ttl: ttl, now: now, revoked: map[string]time.Time{}}
}

func (s *Sessions) mac(purpose, payload string) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write([]byte(payload))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// Issue returns a new session token and when it expires.
func (s *Sessions) Issue() (string, time.Time, error) {
	var nonce [16]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return "", time.Time{}, err
	}
	exp := s.now().Add(s.ttl).Truncate(time.Second)
	payload := strconv.FormatInt(exp.Unix(), 10) + "." + base64.RawURLEncoding.EncodeToString(nonce[:])
	return payload + "." + s.mac("session", payload), exp, nil
}

// Verify checks token's signature and expiry and returns its payload.
func (s *Sessions) Verify(token string) (payload string, err error) {
	i := strings.LastIndexByte(token, '.')
	if i < 0 {
		return "", errSession
	}
	payload, sig := token[:i], token[i+1:]
	if subtle.ConstantTimeCompare([]byte(sig), []byte(s.mac("session", payload))) != 1 {
		return "", errSession
	}
	expStr, nonce, ok := strings.Cut(payload, ".")
	if !ok {
		return "", errSession
	}
	exp, err := strconv.ParseInt(expStr, 10, 64)
	if err != nil {
		return "", errSession
	}
	now := s.now()
	if !now.Before(time.Unix(exp, 0)) {
		return "", errors.New("session expired")
	}
	s.mu.Lock()
	_, gone := s.revoked[nonce]
	s.mu.Unlock()
	if gone {
		return "", errors.New("session logged out")
	}
	return payload, nil
}

// CSRF is the CSRF token bound to a session's payload.
func (s *Sessions) CSRF(payload string) string { return s.mac("csrf", payload) }

// CheckCSRF reports whether got is the CSRF token of payload.
func (s *Sessions) CheckCSRF(payload, got string) bool {
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.CSRF(payload))) == 1
}

// Revoke ends the session of payload on this instance.
func (s *Sessions) Revoke(payload string) {
	expStr, nonce, ok := strings.Cut(payload, ".")
	if !ok {
		return
	}
	exp, err := strconv.ParseInt(expStr, 10, 64)
	if err != nil {
		return
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for n, e := range s.revoked {
		if !now.Before(e) {
			delete(s.revoked, n)
		}
	}
	s.revoked[nonce] = time.Unix(exp, 0)
}
