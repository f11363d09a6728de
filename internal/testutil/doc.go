// Package testutil holds helpers for the project's own tests: a recording
// HTTP target whose answers a test scripts, the PostgreSQL URL switch, and a
// fresh schema per test.
// It is imported only from _test.go files.
package testutil
