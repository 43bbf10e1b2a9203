package rpc

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// MaxRequestBytes bounds one request body on the socket.
const MaxRequestBytes = 1 << 20

// DecodeRequest reads one socket API request strictly: exactly one JSON object of into's
// type, no unknown fields, nothing after it, at most MaxRequestBytes. The error is an
// *Error with CodeBadRequest whose Field names what is at fault: the field (a dotted path
// such as "pod.name", or the unknown field's name) or "body" when the JSON itself is
// broken; its message says so too. kind names the request in the message ("allocate").
func DecodeRequest(body io.Reader, kind string, into any) error {
	dec := json.NewDecoder(io.LimitReader(body, MaxRequestBytes))
	dec.DisallowUnknownFields()
	bad := func(field, format string, args ...any) error {
		return &Error{Code: CodeBadRequest, Field: field,
			Message: fmt.Sprintf("request body is not a valid %s request: ", kind) + fmt.Sprintf(format, args...)}
	}
	if err := dec.Decode(into); err != nil {
		var typeErr *json.UnmarshalTypeError
		var syntaxErr *json.SyntaxError
		switch {
		case errors.As(err, &typeErr) && typeErr.Field != "":
			return bad(typeErr.Field, "field %s must be a JSON %s, not %s", typeErr.Field, jsonKind(typeErr.Type.Kind().String()), typeErr.Value)
		case errors.As(err, &typeErr):
			return bad("body", "body must be a JSON object, not %s", typeErr.Value)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			name, uerr := strconv.Unquote(strings.TrimPrefix(err.Error(), "json: unknown field "))
			if uerr != nil {
				name = strings.TrimPrefix(err.Error(), "json: unknown field ")
			}
			field := name
			if q := strconv.Quote(name); name == "" || q != `"`+name+`"` {
				field = q // an empty or unprintable key is named as it is quoted
			}
			return bad(field, "unknown field %q: check the spelling, or upgrade ipamd and the plugin to one release", name)
		case errors.As(err, &syntaxErr):
			return bad("body", "body is not JSON at byte %d: %v", syntaxErr.Offset, err)
		default: // io.EOF, io.ErrUnexpectedEOF: empty, truncated or over the size limit
			return bad("body", "body is empty, truncated or larger than %d bytes: %v", MaxRequestBytes, err)
		}
	}
	var rest json.RawMessage
	if err := dec.Decode(&rest); !errors.Is(err, io.EOF) {
		return bad("body", "body holds more than one JSON value")
	}
	return nil
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "bool":
		return "boolean"
	case "slice", "array":
		return "list"
	case "struct", "map":
		return "object"
	}
	return "number"
}
