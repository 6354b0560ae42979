// Package testenv decides what a test does where the machine lacks what it needs (root, a
// program, an address to listen on): under CI, with CI set in the environment, it fails, so
// that CI never passes by skipping; elsewhere it skips.
package testenv

import (
	"fmt"
	"os"
	"testing"
)

// SkipOrFail skips t, or fails it under CI, saying why.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") != "" {
		t.Fatal(msg + " (CI is set, so not skipping)")
	}
	t.Skip(msg)
}
