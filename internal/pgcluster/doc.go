// Package pgcluster runs a private, throw-away PostgreSQL server for fault
// tests and the chaos soak: ones that stop the database with -m immediate
// and start it again, which must never be done to the machine's shared
// server while other tests use it.
package pgcluster
