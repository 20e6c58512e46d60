package server

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestAttributesFor(t *testing.T) {
	tests := []struct {
		method, path string
		verb         string
		subs         []string
	}{
		{"GET", "/stats/summary", "get", []string{"stats"}},
		{"GET", "/stats", "get", []string{"stats"}},
		{"GET", "/metrics", "get", []string{"metrics"}},
		{"GET", "/metrics/cadvisor", "get", []string{"metrics"}},
		{"GET", "/metrics/resource", "get", []string{"metrics"}},
		{"GET", "/configz", "get", []string{"configz", "proxy"}},
		{"GET", "/logs/syslog", "get", []string{"log"}},
		{"GET", "/spec/", "get", []string{"spec"}},
		{"GET", "/spec", "get", []string{"spec"}},
		{"GET", "/logs/", "get", []string{"log"}},
		{"GET", "/logs", "get", []string{"log"}},
		{"HEAD", "/logs/sub/app.log", "get", []string{"log"}},
		{"GET", "/runningpods/", "get", []string{"proxy"}},
		{"GET", "/logsx", "get", []string{"proxy"}},
		{"POST", "/checkpoint/ns/pod/c", "create", []string{"checkpoint"}},
		{"GET", "/pods", "get", []string{"pods", "proxy"}},
		{"GET", "/healthz", "get", []string{"healthz", "proxy"}},
		{"HEAD", "/healthz", "get", []string{"healthz", "proxy"}},
		{"GET", "/containerLogs/ns/pod/c", "get", []string{"proxy"}},
		{"POST", "/exec/ns/pod/c", "create", []string{"proxy"}},
		{"GET", "/exec/ns/pod/c", "get", []string{"proxy"}},
		{"POST", "/attach/ns/pod/c", "create", []string{"proxy"}},
		{"POST", "/portForward/ns/pod", "create", []string{"proxy"}},
		{"POST", "/run/ns/pod/c", "create", []string{"proxy"}},
		{"PUT", "/foo", "update", []string{"proxy"}},
		{"PATCH", "/foo", "patch", []string{"proxy"}},
		{"DELETE", "/foo", "delete", []string{"proxy"}},
		// Only whole path segments count.
		{"GET", "/statsfoo", "get", []string{"proxy"}},
		{"GET", "/metricsx", "get", []string{"proxy"}},
		{"GET", "/podsx", "get", []string{"proxy"}},
		{"OPTIONS", "/pods", "", []string{"pods", "proxy"}},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			got := attributesFor(tc.method, tc.path, "node-a")
			if len(got) != len(tc.subs) {
				t.Fatalf("got %d attribute sets %+v, want subresources %v", len(got), got, tc.subs)
			}
			for i, a := range got {
				if a.Verb != tc.verb || a.Subresource != tc.subs[i] || a.NodeName != "node-a" {
					t.Errorf("[%d] = %+v, want verb %q subresource %q name node-a", i, a, tc.verb, tc.subs[i])
				}
			}
		})
	}
}

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

type fakeTokenReviews struct {
	calls  int
	users  map[string]string // token -> user
	broken bool
}

func (f *fakeTokenReviews) Create(_ context.Context, tr *authnv1.TokenReview, _ metav1.CreateOptions) (*authnv1.TokenReview, error) {
	f.calls++
	if f.broken {
		return nil, errors.New("apiserver down")
	}
	out := tr.DeepCopy()
	if u, ok := f.users[tr.Spec.Token]; ok {
		out.Status = authnv1.TokenReviewStatus{Authenticated: true, User: authnv1.UserInfo{Username: u, Groups: []string{"g"}}}
	}
	return out, nil
}

func reqWithToken(tok string) *http.Request {
	r := httptest.NewRequest("GET", "/pods", nil)
	if tok != "" {
		r.Header.Set("Authorization", "Bearer "+tok)
	}
	return r
}

func TestTokenAuthenticatorCaches(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	fr := &fakeTokenReviews{users: map[string]string{"good": "alice"}}
	a := newTokenAuthenticator(fr, time.Minute, clock.now)

	steps := []struct {
		name      string
		advance   time.Duration
		token     string
		broken    bool
		wantOK    bool
		wantErr   bool
		wantCalls int
	}{
		{name: "first good token asks", token: "good", wantOK: true, wantCalls: 1},
		{name: "cached within TTL", advance: 30 * time.Second, token: "good", wantOK: true, wantCalls: 1},
		{name: "bad token asks and is refused", token: "bad", wantErr: true, wantCalls: 2},
		{name: "bad token cached too", token: "bad", wantErr: true, wantCalls: 2},
		{name: "no token: not this authenticator's", token: "", wantCalls: 2},
		{name: "TTL over: asks again", advance: 31 * time.Second, token: "good", wantOK: true, wantCalls: 3},
		{name: "API error is not cached", token: "new", broken: true, wantErr: true, wantCalls: 4},
		{name: "after the error it asks again", token: "new", wantErr: true, wantCalls: 5},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			clock.t = clock.t.Add(s.advance)
			fr.broken = s.broken
			u, ok, err := a.Authenticate(reqWithToken(s.token))
			if ok != s.wantOK || (err != nil) != s.wantErr {
				t.Fatalf("ok=%v err=%v, want ok=%v err=%v", ok, err, s.wantOK, s.wantErr)
			}
			if ok && u.Name != "alice" {
				t.Errorf("user %q, want alice", u.Name)
			}
			if fr.calls != s.wantCalls {
				t.Errorf("TokenReview calls = %d, want %d", fr.calls, s.wantCalls)
			}
		})
	}
}

type fakeSARs struct {
	calls   int
	allowed map[string]bool // user/subresource
}

func (f *fakeSARs) Create(_ context.Context, sar *authzv1.SubjectAccessReview, _ metav1.CreateOptions) (*authzv1.SubjectAccessReview, error) {
	f.calls++
	out := sar.DeepCopy()
	ra := sar.Spec.ResourceAttributes
	if ra.Resource != "nodes" || ra.Name != "node-a" {
		return nil, errors.New("unexpected attributes")
	}
	out.Status.Allowed = f.allowed[sar.Spec.User+"/"+ra.Subresource]
	return out, nil
}

func TestWebhookAuthorizerCachesAllowedAndDeniedApart(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	f := &fakeSARs{allowed: map[string]bool{"alice/proxy": true}}
	z := newWebhookAuthorizer(f, 5*time.Minute, 30*time.Second, clock.now)
	proxy := Attributes{Verb: "get", Subresource: "proxy", NodeName: "node-a"}
	steps := []struct {
		name      string
		advance   time.Duration
		user      string
		want      bool
		wantCalls int
	}{
		{"alice allowed", 0, "alice", true, 1},
		{"bob denied", 0, "bob", false, 2},
		{"both cached", 10 * time.Second, "alice", true, 2},
		{"bob cached", 0, "bob", false, 2},
		{"deny TTL over, allow TTL not", 25 * time.Second, "bob", false, 3},
		{"alice still cached", 0, "alice", true, 3},
		{"allow TTL over", 5 * time.Minute, "alice", true, 4},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			clock.t = clock.t.Add(s.advance)
			ok, _, err := z.Authorize(context.Background(), User{Name: s.user}, proxy)
			if err != nil {
				t.Fatal(err)
			}
			if ok != s.want || f.calls != s.wantCalls {
				t.Errorf("allowed=%v calls=%d, want %v %d", ok, f.calls, s.want, s.wantCalls)
			}
		})
	}
}

func TestChainAuthenticator(t *testing.T) {
	fr := &fakeTokenReviews{users: map[string]string{"good": "alice"}}
	tests := []struct {
		name     string
		token    string
		anon     bool
		wantUser string
		wantOK   bool
	}{
		{"token", "good", false, "alice", true},
		{"no credentials, anonymous off: refused", "", false, "", false},
		{"no credentials, anonymous on", "", true, "system:anonymous", true},
		{"bad token is refused even with anonymous on", "bad", true, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := chainAuthenticator{chain: []Authenticator{newTokenAuthenticator(fr, time.Minute, time.Now)}, anonymous: tc.anon}
			u, ok, _ := c.Authenticate(reqWithToken(tc.token))
			if ok != tc.wantOK || u.Name != tc.wantUser {
				t.Errorf("got %q ok=%v, want %q ok=%v", u.Name, ok, tc.wantUser, tc.wantOK)
			}
		})
	}
}
