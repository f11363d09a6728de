// Package config turns the wamm-relay TOML file into a validated Config: it
// starts from Default, decodes the file strictly (an unknown key is an error
// naming it), expands ${NAME} references in quoted values (an integer or
// boolean key written quoted is expanded, then parsed), and validates every
// value, reporting each problem as a *ValidationError that names the key.
// Masked and WriteTOML print the effective configuration without secrets. The
// package knows TOML and nothing else: it imports no other wamm-relay package
// and builds no component options; app maps Config onto each package's Options.
package config
