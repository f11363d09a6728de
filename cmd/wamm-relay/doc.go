// Command wamm-relay is the relay's single binary: serve, check-config,
// reconcile --once, deliveries list/replay, demo and version. It parses the
// subcommand and flags, turns SIGINT/SIGTERM into a cancelled context, and maps
// errors to exit codes in one place (0 ok, 1 runtime failure, 2 usage or
// configuration error); all wiring lives in package app.
package main
