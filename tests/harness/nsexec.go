package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

// nsenterExec is an invoke.Exec that runs each plugin inside a "node"
// network namespace. Wrapping the command with nsenter keeps our own threads
// out of that namespace and gives the plugin exactly what it would see on
// that node; the environment (CNI_COMMAND, CNI_NETNS, CNI_PATH, ...) passes
// through nsenter unchanged.
type nsenterExec struct {
	netns  string
	stderr io.Writer
	version.PluginDecoder
}

var _ invoke.Exec = (*nsenterExec)(nil)

func (e *nsenterExec) ExecPlugin(ctx context.Context, pluginPath string, stdin []byte, environ []string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "nsenter", "--net="+e.netns, "--", pluginPath)
	cmd.Env = environ
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if stderr.Len() > 0 && e.stderr != nil {
		_, _ = e.stderr.Write(stderr.Bytes())
	}
	if err != nil {
		return nil, pluginError(err, stdout.Bytes(), stderr.Bytes())
	}
	return stdout.Bytes(), nil
}

func (e *nsenterExec) FindInPath(plugin string, paths []string) (string, error) {
	return invoke.FindInPath(plugin, paths)
}

// pluginError turns a failed run into the *types.Error the plugin printed on
// stdout, like invoke.RawExec does, so callers can inspect the CNI error code.
func pluginError(err error, stdout, stderr []byte) error {
	emsg := &types.Error{}
	switch {
	case len(stdout) == 0 && len(stderr) == 0:
		emsg.Msg = fmt.Sprintf("netplugin failed with no error message: %v", err)
	case len(stdout) == 0:
		emsg.Msg = fmt.Sprintf("netplugin failed: %q: %v", stderr, err)
	default:
		if perr := json.Unmarshal(stdout, emsg); perr != nil {
			emsg.Msg = fmt.Sprintf("netplugin failed but its diagnostic message %q does not parse: %v", stdout, perr)
		}
	}
	return emsg
}
