// Command image builds underpool's container image without a container engine: it
// cross-compiles the static binaries, puts them in one layer on an empty base (FROM
// scratch: nothing to pull, nothing but our binaries to patch) and writes
//
//	<out>/oci/              an OCI image layout
//	<out>/underpool.tar     a tarball `docker load` and `crane push` take
//	<out>/image.json        the reference, digest and version, for scripts and tests
//	<out>/deploy/           a kustomization of deploy/ pinned to this image
//	<out>/values.yaml       the same pin for the Helm chart
//
// `make image` runs it; IMAGE_REPO and IMAGE_TAG there set the reference for all of them.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
)

func main() {
	var o options
	flag.StringVar(&o.repo, "repo", "ghcr.io/underpool/underpool", "image repository")
	flag.StringVar(&o.tag, "tag", "", "image tag; empty: the version")
	flag.StringVar(&o.version, "version", "", "version stamped into the binaries and labels; empty: git describe --tags --always --dirty")
	flag.StringVar(&o.out, "out", "bin/image", "output directory (replaced)")
	flag.StringVar(&o.arch, "arch", runtime.GOARCH, "target architecture (linux/<arch>)")
	flag.StringVar(&o.source, "source", "https://github.com/underpool/underpool", "org.opencontainers.image.source label")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}
