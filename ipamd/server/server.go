// Package server exposes ipamd's service as JSON over HTTP on a unix socket.
package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/underpool/underpool/ipamd/service"
	"github.com/underpool/underpool/rpc"
)

// requestTimeout bounds one request's work; it runs detached from the client connection so
// that a plugin giving up mid-way cannot leave a half-written allocation.
const requestTimeout = 60 * time.Second

// Server serves the v1 socket API.
type Server struct {
	Service *service.Service
	Log     *zap.Logger
	// Peers admits connecting processes; the zero value admits root alone.
	Peers *Peers
	http  *http.Server
}

// Handler returns the socket API's routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+rpc.PathAllocate, serve(s, true, s.Service.Allocate))
	mux.HandleFunc("POST "+rpc.PathRelease, serve(s, true, func(ctx context.Context, r *rpc.ReleaseRequest) (*struct{}, error) {
		return &struct{}{}, s.Service.Release(ctx, r)
	}))
	mux.HandleFunc("POST "+rpc.PathGC, func(w http.ResponseWriter, r *http.Request) {
		// force lifts the share limit (never the minimum age): for an operator who knows
		// the runtime really lost that many sandboxes
		force := r.URL.Query().Get("force") == "true"
		serve(s, true, func(ctx context.Context, req *rpc.GCRequest) (*rpc.GCResponse, error) {
			return s.Service.GC(ctx, req, force)
		})(w, r)
	})
	mux.HandleFunc("GET "+rpc.PathStatus, func(w http.ResponseWriter, _ *http.Request) {
		ready, reason := s.Service.Ready()
		writeJSON(w, http.StatusOK, &rpc.StatusResponse{Ready: ready, Node: s.Service.Node, Reason: reason})
	})
	mux.HandleFunc("/", rpc.RefuseUnknownPath)
	return mux
}

// serve decodes a JSON request, refuses it while ipamd is not ready, and encodes the answer.
func serve[Req, Resp any](s *Server, needReady bool, fn func(context.Context, *Req) (*Resp, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if ready, reason := s.Service.Ready(); needReady && !ready {
			writeError(w, &rpc.Error{Code: rpc.CodeTryAgainLater, Message: "ipamd is not ready: " + reason})
			return
		}
		var req Req
		// the one fuzzed decoder: strict, bounded, its refusal names the field
		if err := rpc.DecodeRequest(r.Body, strings.TrimPrefix(r.URL.Path, "/"+rpc.APIVersion+"/"), &req); err != nil {
			writeError(w, err)
			return
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), requestTimeout)
		defer cancel()
		resp, err := fn(ctx, &req)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, resp)
	}
}

func writeError(w http.ResponseWriter, err error) {
	var e *rpc.Error
	if !errors.As(err, &e) {
		e = &rpc.Error{Code: rpc.CodeInternal, Message: err.Error()}
	}
	status := http.StatusInternalServerError
	switch e.Code {
	case rpc.CodeBadRequest:
		status = http.StatusBadRequest
	case rpc.CodeTryAgainLater:
		status = http.StatusServiceUnavailable
	case rpc.CodeNoAddress:
		status = http.StatusConflict
	case rpc.CodeNotHeld:
		status = http.StatusNotFound
	}
	writeJSON(w, status, e)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Listen opens the unix socket at path, mode 0600 (ipamd's own; the CNI plugins run as
// root), or 0660 in group when group >= 0 (root and that group). It needs no capability,
// so ipamd can run as a non-root user with every capability dropped: the socket is made
// with its final mode (no window in which it is open wider), and it gets the group from
// its directory (setgid: underpool-install --socket-dir-group leaves /run/underpool so)
// or from ipamd's own gid, or else is given it by ipamd as its owner, which the kernel
// allows without CAP_CHOWN for any group ipamd is in.
func Listen(path string, group int) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("creating socket directory: %w", err)
	}
	// a socket file left by a previous run would make bind fail
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("removing stale socket %s: %w", path, err)
	}
	mode := os.FileMode(0o600)
	if group >= 0 {
		mode = 0o660
	}
	l, err := listenWithMode(path, mode)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	if group >= 0 {
		if err := giveToGroup(path, group); err != nil {
			l.Close()
			return nil, err
		}
	}
	if err := os.Chmod(path, mode); err != nil {
		l.Close()
		return nil, fmt.Errorf("restricting socket %s: %w", path, err)
	}
	return l, nil
}

// listenWithMode binds the socket under a umask that leaves it mode at most. The umask is
// the process's: anything another goroutine creates meanwhile only comes out narrower.
func listenWithMode(path string, mode os.FileMode) (net.Listener, error) {
	old := syscall.Umask(int(^mode.Perm() & 0o777))
	defer syscall.Umask(old)
	return net.Listen("unix", path)
}

// giveToGroup sets the socket's group unless it has it already, keeping its owner: an
// owner may give its file to any group it is in without CAP_CHOWN (giving it to root, as
// this once did, needed the capability, which the manifests drop).
func giveToGroup(path string, group int) error {
	fi, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("reading socket %s: %w", path, err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Gid) == group {
		return nil
	}
	if err := os.Lchown(path, -1, group); err != nil {
		return fmt.Errorf("giving socket %s to --socket-group %d: %w: ipamd (uid %d, gid %d) can give it only to a group it is in: "+
			"run ipamd in that group (securityContext supplementalGroups; the Helm chart's ipamd.socketGroup does), "+
			"or give the socket directory that group with the setgid bit (underpool-install --socket-dir-group)",
			path, group, err, os.Geteuid(), os.Getegid())
	}
	return nil
}

// Serve runs until ctx ends, then stops accepting and waits for in-flight requests.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	s.http = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	peers := RootOnly
	if s.Peers != nil {
		peers = *s.Peers
	}
	checked := &checkedListener{Listener: l, peers: peers, log: s.Log}
	errc := make(chan error, 1)
	go func() { errc <- s.http.Serve(checked) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	s.Log.Info("shutting down the socket server, finishing in-flight requests")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), requestTimeout+5*time.Second)
	defer cancel()
	return s.http.Shutdown(shutdownCtx)
}
