// Command kubectl-underpool is the kubectl plugin `kubectl underpool`: put it on the PATH
// and run `kubectl underpool --help`.
package main

import (
	"os"

	"github.com/underpool/underpool/kubectlplugin"
)

func main() { os.Exit(kubectlplugin.Main()) }
