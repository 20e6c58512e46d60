package server

import (
	"context"
	"net/http"
	"strings"
)

// User is an authenticated caller.
type User struct {
	Name   string
	UID    string
	Groups []string
	Extra  map[string][]string
}

// anonymous is who an unauthenticated request is when anonymous access is on.
func anonymous() User {
	return User{Name: "system:anonymous", Groups: []string{"system:unauthenticated"}}
}

// Authenticator finds who sent a request. ok=false with a nil error means "no credentials this
// authenticator understands"; an error means the credentials were presented and are bad or could
// not be checked.
type Authenticator interface {
	Authenticate(r *http.Request) (u User, ok bool, err error)
}

// Attributes is what is authorized: the verb on nodes/<Subresource> named NodeName.
type Attributes struct {
	Verb        string
	Subresource string
	NodeName    string
	// Path is the request path, for error messages.
	Path string
}

// Authorizer decides whether a user may do what attributes say.
type Authorizer interface {
	Authorize(ctx context.Context, u User, a Attributes) (allowed bool, reason string, err error)
}

// verbFor maps an HTTP method to an API verb as upstream's kubelet does; "" for methods it does
// not serve.
func verbFor(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead:
		return "get"
	case http.MethodPost:
		return "create"
	case http.MethodPut:
		return "update"
	case http.MethodPatch:
		return "patch"
	case http.MethodDelete:
		return "delete"
	}
	return ""
}

// attributesFor returns the attribute sets that each allow the request, most specific first. As
// upstream (KubeletFineGrainedAuthz, on by default since 1.33), /pods and /healthz are checked
// as nodes/pods and nodes/healthz first and fall back to nodes/proxy, so callers granted only
// nodes/proxy keep working.
func attributesFor(method, path, nodeName string) []Attributes {
	verb := verbFor(method)
	mk := func(sub string) Attributes {
		return Attributes{Verb: verb, Subresource: sub, NodeName: nodeName, Path: path}
	}
	switch {
	case isSubpath(path, "/stats"):
		return []Attributes{mk("stats")}
	case isSubpath(path, "/metrics"):
		return []Attributes{mk("metrics")}
	case isSubpath(path, "/logs"):
		return []Attributes{mk("log")}
	case isSubpath(path, "/spec"):
		return []Attributes{mk("spec")}
	case isSubpath(path, "/checkpoint"):
		return []Attributes{mk("checkpoint")}
	case isSubpath(path, "/pods"):
		return []Attributes{mk("pods"), mk("proxy")}
	case isSubpath(path, "/healthz"):
		return []Attributes{mk("healthz"), mk("proxy")}
	case isSubpath(path, "/configz"):
		return []Attributes{mk("configz"), mk("proxy")}
	}
	return []Attributes{mk("proxy")}
}

// isSubpath says whether path is prefix itself or below it ("/statsfoo" is not under "/stats").
func isSubpath(path, prefix string) bool {
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}
