// Package conflistexamples embeds the examples users copy (NADs, conflists, pools, pods), so
// that the tests that validate and run them read exactly these files wherever they run: on
// this machine, and inside the VM that has the kernel features this one lacks.
package conflistexamples

import "embed"

// Files holds every example of the folder.
//
//go:embed *.yaml *.conflist
var Files embed.FS
