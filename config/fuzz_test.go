package config

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzParse checks that Parse never panics, that whatever it accepts
// validates again, and that WriteTOML of it parses back to the same Config.
func FuzzParse(f *testing.F) {
	for _, dir := range []string{"good", "bad"} {
		files, err := filepath.Glob(filepath.Join("testdata", dir, "*.toml"))
		require.NoError(f, err)
		for _, file := range files {
			data, err := os.ReadFile(file)
			require.NoError(f, err)
			f.Add(data)
		}
	}
	example, err := os.ReadFile(filepath.Join("..", "config.toml"))
	require.NoError(f, err)
	f.Add(example)

	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseWith(bytes.NewReader(data), lookup(testEnv))
		if err != nil {
			return
		}
		require.NoError(t, c.Validate(), "a parsed config must re-validate")

		var buf bytes.Buffer
		require.NoError(t, c.WriteTOML(&buf))
		if strings.Contains(buf.String(), "${") {
			return // a literal ${NAME} left by expansion would expand again
		}
		back, err := ParseWith(&buf, lookup(testEnv))
		require.NoError(t, err, "WriteTOML output must parse:\n%s", buf.String())
		require.Equal(t, c, back)

		var masked bytes.Buffer
		require.NoError(t, c.Masked().WriteTOML(&masked))
	})
}
