package chain

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"

	"github.com/underpool/underpool/chain/ipamplugin"
	"github.com/underpool/underpool/rpc"
)

// fakeDelegate installs a delegate plugin in a temp CNI_PATH that records its verb and
// config and exits with code; it returns the record's path.
func fakeDelegate(t *testing.T, code int) string {
	t.Helper()
	dir := t.TempDir()
	record := filepath.Join(dir, "record")
	script := "#!/bin/sh\necho \"$CNI_COMMAND\" >> " + record + "\ncat >> " + record + "\necho >> " + record + "\n"
	if code != 0 {
		script += "echo '{\"cniVersion\":\"1.1.0\",\"code\":7,\"msg\":\"delegate refuses\"}'\nexit 1\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "fakelink"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CNI_PATH", dir)
	return record
}

// fakeIpamd answers GC on a temp socket, recording the requests.
func fakeIpamd(t *testing.T) *[]rpc.GCRequest {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "ipamd.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []rpc.GCRequest
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req rpc.GCRequest
		if r.URL.Path != rpc.PathGC || json.NewDecoder(r.Body).Decode(&req) != nil {
			http.Error(w, `{"code":102,"msg":"bad"}`, http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, req)
		mu.Unlock()
		_, _ = w.Write([]byte(`{"released":[]}`))
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	t.Setenv(ipamplugin.SocketEnv, sock)
	t.Setenv(ipamplugin.LogDirEnv, t.TempDir())
	return &got
}

// CNI 1.1: the meta-plugin's GC calls the delegate's GC with the runtime's valid
// attachments, and ipamd's GC runs whatever the delegate answers.
func TestGCIsPassedOnToTheDelegate(t *testing.T) {
	conf := []byte(`{"cniVersion":"1.1.0","name":"under","type":"underpool",
		"delegate":{"type":"fakelink","master":"eth1"},"ipam":{"ipv4Pools":["p"]},
		"cni.dev/valid-attachments":[{"containerID":"c1","ifname":"net1"}]}`)
	for _, c := range []struct {
		name     string
		code     int
		wantFail string
	}{
		{"delegate succeeds", 0, ""},
		{"delegate fails", 1, "delegate fakelink GC"},
	} {
		t.Run(c.name, func(t *testing.T) {
			record := fakeDelegate(t, c.code)
			ipamd := fakeIpamd(t)
			err := MetaFuncs().GC(&skel.CmdArgs{StdinData: conf})
			if c.wantFail == "" && err != nil {
				t.Fatalf("GC: %v", err)
			}
			if c.wantFail != "" && (err == nil || !strings.Contains(err.Error(), c.wantFail)) {
				t.Fatalf("GC error %v, want one naming %q", err, c.wantFail)
			}
			raw, err := os.ReadFile(record)
			if err != nil {
				t.Fatalf("the delegate was not called: %v", err)
			}
			verb, body, _ := strings.Cut(string(raw), "\n")
			if verb != "GC" {
				t.Fatalf("delegate called with %q, want GC", verb)
			}
			var d struct {
				Type  string `json:"type"`
				Valid []struct {
					ContainerID string `json:"containerID"`
					IfName      string `json:"ifname"`
				} `json:"cni.dev/valid-attachments"`
				IPAM any `json:"ipam"`
			}
			if err := json.Unmarshal([]byte(body), &d); err != nil {
				t.Fatalf("delegate config %q: %v", body, err)
			}
			if d.Type != "fakelink" || len(d.Valid) != 1 || d.Valid[0].ContainerID != "c1" || d.Valid[0].IfName != "net1" || d.IPAM != nil {
				t.Fatalf("delegate GC config %s lacks the valid attachments or keeps an ipam", body)
			}
			if len(*ipamd) != 1 || (*ipamd)[0].Network != "under" || len((*ipamd)[0].Valid) != 1 {
				t.Fatalf("ipamd GC requests %+v, want one for network under with c1/net1 valid", *ipamd)
			}
		})
	}
}
