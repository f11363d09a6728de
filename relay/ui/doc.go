// Package ui is the operator dashboard served at /ui: static HTML, CSS and
// vanilla JavaScript embedded in the binary (no CDN, no build step), a login
// form for the admin token, and stateless signed session cookies with a
// CSRF token bound to each session, so any instance behind a load balancer
// verifies a session another one issued. It renders what the admin API
// (/api/v1) returns and never reads the store itself.
package ui
