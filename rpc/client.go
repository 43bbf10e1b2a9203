package rpc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// Error codes beyond the CNI spec's well-known ones (types.Err*), in the spec's range for
// plugin-specific errors.
const (
	CodeTryAgainLater uint = 11 // same as types.ErrTryAgainLater
	CodeUnreachable   uint = 101
	CodeBadRequest    uint = 102
	CodeNoAddress     uint = 103
	CodeNotHeld       uint = 104
	CodeInternal      uint = 999
)

// Client talks to ipamd over its unix socket.
type Client struct {
	socket string
	http   *http.Client
}

// NewClient returns a client for the ipamd socket at path.
func NewClient(path string) *Client {
	if path == "" {
		path = DefaultSocket
	}
	dialer := &net.Dialer{Timeout: 2 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, "unix", path)
		},
		DisableCompression: true,
	}
	return &Client{socket: path, http: &http.Client{Transport: tr}}
}

// Allocate asks for the addresses of one attachment.
func (c *Client) Allocate(ctx context.Context, req *AllocateRequest) (*AllocateResponse, error) {
	var resp AllocateResponse
	return &resp, c.do(ctx, http.MethodPost, PathAllocate, req, &resp)
}

// Release frees the addresses of an attachment.
func (c *Client) Release(ctx context.Context, req *ReleaseRequest) error {
	return c.do(ctx, http.MethodPost, PathRelease, req, nil)
}

// GC releases this node's attachments of a network that are not in the valid list.
func (c *Client) GC(ctx context.Context, req *GCRequest) (*GCResponse, error) {
	var resp GCResponse
	return &resp, c.do(ctx, http.MethodPost, PathGC, req, &resp)
}

// Status asks whether ipamd serves allocations.
func (c *Client) Status(ctx context.Context) (*StatusResponse, error) {
	var resp StatusResponse
	return &resp, c.do(ctx, http.MethodGet, PathStatus, nil, &resp)
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://ipamd"+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return &Error{Code: CodeUnreachable, Message: fmt.Sprintf(
			"ipamd unreachable at %s: %v; check that ipamd runs on this node and the ipam.socket path", c.socket, unwrapNet(err))}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return &Error{Code: CodeUnreachable, Message: fmt.Sprintf("reading ipamd answer: %v", err)}
	}
	if resp.StatusCode/100 != 2 {
		e := &Error{}
		switch {
		case json.Unmarshal(data, e) == nil && e.Message != "":
		case resp.StatusCode == http.StatusNotFound:
			// a daemon from before RefuseUnknownPath answers an unknown version this way
			e = &Error{Code: CodeBadRequest, Field: "path", Message: fmt.Sprintf(
				"ipamd at %s does not serve %s: it speaks another socket API than this plugin's %s; upgrade both to the same release",
				c.socket, path, APIVersion)}
		default:
			e = &Error{Code: CodeInternal, Message: fmt.Sprintf("ipamd answered %s: %s", resp.Status, bytes.TrimSpace(data))}
		}
		return e
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return &Error{Code: CodeInternal, Message: fmt.Sprintf("ipamd answer is not valid JSON: %v", err)}
	}
	return nil
}

// unwrapNet drops the URL noise from net/http errors, keeping the syscall cause.
func unwrapNet(err error) error {
	var op *net.OpError
	if errors.As(err, &op) {
		return op
	}
	return err
}
