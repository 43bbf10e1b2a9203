package ipamplugin

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/underpool/underpool/rpc"
)

// fakeIpamd answers every path on a temp socket with answer; asked returns the body of
// the last request to a path.
func fakeIpamd(t *testing.T, answer string) (sock string, asked func(path string) string) {
	t.Helper()
	sock = filepath.Join(t.TempDir(), "ipamd.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	bodies := map[string]string{}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies[r.URL.Path] = string(body)
		mu.Unlock()
		_, _ = w.Write([]byte(answer))
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return sock, func(path string) string {
		mu.Lock()
		defer mu.Unlock()
		return bodies[path]
	}
}

func cniCode(err error) uint {
	var e *types.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

// The IPAM plugin's DEL, STATUS and GC: a DEL never fails on an unreachable ipamd (its
// GC reclaims the address; a failing DEL would block the pod's removal), STATUS says
// the plugin is not available, and GC passes the runtime's valid attachments on.
func TestIPAMVerbsAgainstIpamd(t *testing.T) {
	t.Setenv(LogDirEnv, t.TempDir())
	conf := []byte(`{"cniVersion":"1.1.0","name":"plain","type":"macvlan","ipam":{"type":"underpool-ipam"},
		"cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"}]}`)
	args := &skel.CmdArgs{ContainerID: "c1", IfName: "eth0", StdinData: conf}

	t.Setenv(SocketEnv, filepath.Join(t.TempDir(), "nobody-listens.sock"))
	if err := Funcs().Del(args); err != nil {
		t.Fatalf("DEL with ipamd unreachable: %v, want success", err)
	}
	if err := Funcs().Status(&skel.CmdArgs{StdinData: conf}); cniCode(err) != types.ErrPluginNotAvailable {
		t.Fatalf("STATUS with ipamd unreachable: %v, want code %d", err, types.ErrPluginNotAvailable)
	}

	sock, asked := fakeIpamd(t, `{"ready":false,"reason":"caches not synced","released":[]}`)
	t.Setenv(SocketEnv, sock)
	if err := Funcs().Status(&skel.CmdArgs{StdinData: conf}); cniCode(err) != types.ErrPluginNotAvailable {
		t.Fatalf("STATUS with ipamd not ready: %v, want code %d", err, types.ErrPluginNotAvailable)
	}
	if err := Funcs().GC(&skel.CmdArgs{StdinData: conf}); err != nil {
		t.Fatalf("GC: %v", err)
	}
	var gc rpc.GCRequest
	if err := json.Unmarshal([]byte(asked(rpc.PathGC)), &gc); err != nil || gc.Network != "plain" ||
		len(gc.Valid) != 1 || gc.Valid[0] != (rpc.Attachment{ContainerID: "c1", IfName: "eth0"}) {
		t.Fatalf("ipamd GC request %q (%v), want network plain with c1/eth0 valid", asked(rpc.PathGC), err)
	}
}
