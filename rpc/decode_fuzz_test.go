package rpc

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// requestKinds are the socket API's request bodies, by the name DecodeRequest reports.
var requestKinds = []struct {
	kind string
	new  func() any
}{
	{"allocate", func() any { return &AllocateRequest{} }},
	{"release", func() any { return &ReleaseRequest{} }},
	{"gc", func() any { return &GCRequest{} }},
}

// jsonPaths lists the dotted JSON paths of t's fields ("pod", "pod.name"), as
// encoding/json names them in its errors (list elements are transparent).
func jsonPaths(t reflect.Type, prefix string, into map[string]bool) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return
	}
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		into[prefix+name] = true
		jsonPaths(t.Field(i).Type, prefix+name+".", into)
	}
}

// checkRejection asserts a refused request is a bad request naming what is at fault:
// a known field, an unknown one (named in the message), or the body.
func checkRejection(t *testing.T, kind string, typ reflect.Type, data []byte, err error) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeBadRequest {
		t.Fatalf("%s %q: error %#v is not a bad request", kind, data, err)
	}
	known := map[string]bool{"body": true}
	jsonPaths(typ, "", known)
	unknown := strings.Contains(e.Message, "unknown field")
	if e.Field == "" || (!known[e.Field] && !unknown) || !strings.Contains(e.Message, e.Field) {
		t.Fatalf("%s %q: error field %q (message %q) names no field of the request", kind, data, e.Field, e.Message)
	}
}

func TestDecodeRequestNamesTheField(t *testing.T) {
	cases := []struct {
		name, kind, body, field string
	}{
		{"valid", "allocate", `{"containerID":"c","ifName":"net1","pod":{"namespace":"n","name":"p"}}`, ""},
		{"valid with trailing space", "gc", "{\"network\":\"n\",\"valid\":[]}\n", ""},
		{"wrong type", "allocate", `{"containerID":5}`, "containerID"},
		{"wrong type nested", "allocate", `{"pod":{"name":true}}`, "pod.name"},
		{"wrong type in a list", "gc", `{"valid":[{"ifName":1}]}`, "valid.ifName"},
		{"unknown field", "release", `{"containerID":"c","force":true}`, "force"},
		{"not JSON", "gc", `{"network":`, "body"},
		{"empty", "gc", ``, "body"},
		{"a list, not an object", "allocate", `[]`, "body"},
		{"trailing garbage", "allocate", `{"containerID":"c"} x`, "body"},
		{"two objects", "release", `{}{}`, "body"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, k := range requestKinds {
				if k.kind != c.kind {
					continue
				}
				v := k.new()
				err := DecodeRequest(strings.NewReader(c.body), k.kind, v)
				if c.field == "" {
					if err != nil {
						t.Fatalf("%s: %v", c.body, err)
					}
					return
				}
				var e *Error
				if !errors.As(err, &e) || e.Field != c.field || !strings.Contains(e.Message, c.field) || e.Code != CodeBadRequest {
					t.Fatalf("%s: error %#v, want a bad request naming %q", c.body, err, c.field)
				}
			}
		})
	}
}

// FuzzDecodeRequest: no body panics the decoder, every refusal names a field of the
// request (or the body), and what is accepted re-encodes to a body that decodes alike.
func FuzzDecodeRequest(f *testing.F) {
	for _, seed := range []string{
		`{"containerID":"c","ifName":"net1","network":"n","pod":{"namespace":"ns","name":"p","uid":"u"},"requestedIPs":["10.0.0.5"],"ipv4Pools":["a"],"ipv6Pools":["b"],"lookupOnly":true}`,
		`{"containerID":"c","ifName":"net1","pod":{"namespace":"ns","name":"p"},"conflicts":[{"ip":"10.0.0.5","mac":"02:00:00:00:00:01"}]}`,
		`{"network":"n","valid":[{"containerID":"c","ifName":"net1"}]}`,
		`{"pod":{"name":1}}`, `{"x":1}`, `[`, `{}{}`, `null`, `"s"`,
	} {
		for i := range requestKinds {
			f.Add([]byte(seed), uint8(i))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, which uint8) {
		k := requestKinds[int(which)%len(requestKinds)]
		v := k.new()
		err := DecodeRequest(bytes.NewReader(data), k.kind, v)
		if err != nil {
			checkRejection(t, k.kind, reflect.TypeOf(v), data, err)
			return
		}
		enc, merr := json.Marshal(v)
		if merr != nil {
			t.Fatalf("%s %q: accepted but does not re-encode: %v", k.kind, data, merr)
		}
		again := k.new()
		if err := DecodeRequest(bytes.NewReader(enc), k.kind, again); err != nil {
			t.Fatalf("%s %q: re-encoded as %s, refused: %v", k.kind, data, enc, err)
		}
		if enc2, _ := json.Marshal(again); !bytes.Equal(enc, enc2) {
			t.Fatalf("%s %q: decodes to %s, its re-encoding to %s", k.kind, data, enc, enc2)
		}
	})
}

// FuzzAllocateResponse: whatever ipamd answers, the plugin's one wire decoder does not
// panic, names the answer's field at fault, and what it accepts formats back to itself.
func FuzzAllocateResponse(f *testing.F) {
	f.Add("10.250.1.5/24", "10.250.1.1", "pool", "10.0.0.0/8", "10.250.1.254")
	f.Add("fd00::5/64", "", "p6", "::/0", "fd00::1")
	f.Add("10.250.1.5", "fd00::1", "", "10.0.0.0", "x")
	f.Fuzz(func(t *testing.T, addr, gw, pool, dst, rgw string) {
		resp := &AllocateResponse{IPs: []IPConfig{{Address: addr, Gateway: gw, Pool: pool}}, Routes: []Route{{Dst: dst, Gw: rgw}}}
		a, err := resp.Allocation()
		if err != nil {
			if msg := err.Error(); !strings.Contains(msg, "ips[0]") && !strings.Contains(msg, "routes[0]") {
				t.Fatalf("answer %+v: error %q names no field of the answer", resp, msg)
			}
			return
		}
		back, err := NewAllocateResponse(a).Allocation()
		if err != nil || !reflect.DeepEqual(back, a) {
			t.Fatalf("answer %+v: %+v formats back to %+v, %v", resp, a, back, err)
		}
	})
}
