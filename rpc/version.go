package rpc

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// RefuseUnknownPath answers every request no API path matched. A plugin of another
// release asking for a version this daemon does not serve gets an error saying so, rather
// than an empty 404 or a body it would misread.
func RefuseUnknownPath(w http.ResponseWriter, r *http.Request) {
	e := &Error{Code: CodeBadRequest, Field: "path"}
	version, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	if version == APIVersion {
		e.Message = fmt.Sprintf("ipamd socket API %s has no %s %s", APIVersion, r.Method, r.URL.Path)
	} else {
		e.Message = fmt.Sprintf("ipamd serves socket API %s, and this request is for %q (%s): the plugin and ipamd are from releases "+
			"that do not share a socket API; upgrade both to the same release", APIVersion, version, r.URL.Path)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusNotFound)
	_ = json.NewEncoder(w).Encode(e)
}
