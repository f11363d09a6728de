//go:build !unix

package sqlite

import "os"

// lockFile does nothing where flock is missing: run one relay per file.
func lockFile(*os.File) error { return nil }
