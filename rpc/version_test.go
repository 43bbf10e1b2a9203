package rpc

import (
	"context"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// serveOn serves h on a unix socket in a temp dir and returns a client for it.
func serveOn(t *testing.T, h http.Handler) *Client {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ipamd.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return NewClient(path)
}

// A plugin asking for a version the daemon does not serve gets an error saying so.
func TestUnknownVersionIsRefusedByName(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/", RefuseUnknownPath)
	c := serveOn(t, mux)
	cases := map[string]string{
		"/v2/allocate": `this request is for "v2"`,
		"/v1/nothing":  "socket API v1 has no POST /v1/nothing",
	}
	for path, want := range cases {
		t.Run(path, func(t *testing.T) {
			err := c.do(context.Background(), http.MethodPost, path, struct{}{}, nil)
			var e *Error
			if !errors.As(err, &e) || e.Code != CodeBadRequest || e.Field != "path" || !strings.Contains(e.Message, want) {
				t.Fatalf("error %#v, want a bad request on path saying %q", err, want)
			}
		})
	}
}

// A daemon from before the refusal answers an unknown version with a bare 404: the
// client still names the likely cause.
func TestBare404ReadsAsAVersionMismatch(t *testing.T) {
	c := serveOn(t, http.NewServeMux())
	_, err := c.Allocate(context.Background(), &AllocateRequest{})
	var e *Error
	if !errors.As(err, &e) || !strings.Contains(e.Message, "another socket API than this plugin's v1") {
		t.Fatalf("error %v, want one naming the socket API version", err)
	}
}
