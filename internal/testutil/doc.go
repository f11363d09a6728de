// Package testutil holds helpers for the project's own tests: a recording
// HTTP target whose answers a test scripts, and the PostgreSQL URL switch.
// It is imported only from _test.go files.
package testutil
