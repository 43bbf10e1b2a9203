package harness

import (
	"crypto/rand"
	"encoding/hex"
)

// maxIfNameLen is IFNAMSIZ-1: Linux interface names hold at most 15 bytes.
const maxIfNameLen = 15

// UniqueName returns prefix plus 8 random hex digits, cut to 15 characters,
// so the result is valid both as an interface and a netns name. Randomness
// (rather than a counter) keeps parallel test processes from colliding.
func UniqueName(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b) // never fails on Linux
	suffix := hex.EncodeToString(b)
	if max := maxIfNameLen - len(suffix); len(prefix) > max {
		prefix = prefix[:max]
	}
	return prefix + suffix
}
