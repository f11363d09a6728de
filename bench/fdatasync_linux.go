package main

import (
	"os"
	"syscall"
)

// fdatasync syncs f's data and size, not its timestamps.
func fdatasync(f *os.File) error { return syscall.Fdatasync(int(f.Fd())) }
