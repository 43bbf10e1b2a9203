// Package buildinfo carries the version stamped into every underpool binary, so an operator
// can tell which build a node runs (`ipamd --version`, `underpool --version`) and the image
// test can prove each binary in the image is the build its labels name.
package buildinfo

import (
	"fmt"
	"os"
	"runtime/debug"
)

// Version is set at link time by the Makefile and the image builder:
//
//	-ldflags "-X github.com/underpool/underpool/internal/buildinfo.Version=$(git describe --tags --always --dirty)"
//
// Empty means a plain `go build`; Get then falls back to what the Go toolchain stamped.
var Version string

// Get returns the stamped version, else the module version the toolchain derived from
// git (Go 1.24+ stamps a pseudo-version for the main module), else "dev".
func Get() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// String is what --version prints: "<name> <version>", one line, nothing else, so
// scripts can take the second field.
func String(name string) string { return name + " " + Get() }

// About is a CNI plugin's skel about text: skel prints it when run without CNI_COMMAND.
func About(name, what string) string { return String(name) + ": " + what }

// PrintIfAsked handles `<binary> --version` for the CNI plugins, whose skel wiring owns
// every other way of being called: a runtime never passes arguments, a human may.
func PrintIfAsked(name string) {
	if len(os.Args) == 2 && (os.Args[1] == "--version" || os.Args[1] == "-version") {
		fmt.Println(String(name))
		os.Exit(0)
	}
}
