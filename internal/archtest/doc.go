// Package archtest enforces the package layering of the style guide: which
// project package may import which. It has no production code; its test reads
// every non-test Go file's imports and fails on an arrow the table forbids,
// so the rule holds in CI without an external linter.
package archtest
