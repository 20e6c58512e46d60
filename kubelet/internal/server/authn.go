package server

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// certAuthenticator accepts client certificates that chain to its CAs: user = CN, groups = O.
type certAuthenticator struct {
	roots *x509.CertPool
	now   func() time.Time
}

func (a certAuthenticator) Authenticate(r *http.Request) (User, bool, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return User{}, false, nil
	}
	leaf := r.TLS.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range r.TLS.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: a.roots, Intermediates: inter, CurrentTime: a.now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return User{}, false, fmt.Errorf("client certificate %q: %w", leaf.Subject.CommonName, err)
	}
	if leaf.Subject.CommonName == "" {
		return User{}, false, errors.New("client certificate has no common name")
	}
	return User{Name: leaf.Subject.CommonName, Groups: append([]string(nil), leaf.Subject.Organization...)}, true, nil
}

// TokenReviews is the part of client-go's TokenReviewInterface the token authenticator uses.
type TokenReviews interface {
	Create(ctx context.Context, tr *authnv1.TokenReview, opts metav1.CreateOptions) (*authnv1.TokenReview, error)
}

// tokenAuthenticator checks bearer tokens with TokenReview and caches the answers (both
// kinds, for ttl) under a hash of the token; failed calls are not cached.
type tokenAuthenticator struct {
	reviews TokenReviews
	ttl     time.Duration
	cache   *ttlCache[tokenAnswer]
}

type tokenAnswer struct {
	user User
	ok   bool
}

func newTokenAuthenticator(reviews TokenReviews, ttl time.Duration, now func() time.Time) *tokenAuthenticator {
	return &tokenAuthenticator{reviews: reviews, ttl: ttl, cache: newTTLCache[tokenAnswer](now, 4096)}
}

func bearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, found := strings.Cut(h, " ")
	if !found || !strings.EqualFold(scheme, "bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

func (a *tokenAuthenticator) Authenticate(r *http.Request) (User, bool, error) {
	tok, ok := bearerToken(r)
	if !ok {
		return User{}, false, nil
	}
	sum := sha256.Sum256([]byte(tok))
	key := hex.EncodeToString(sum[:])
	if ans, ok := a.cache.get(key); ok {
		return a.result(ans)
	}
	out, err := a.reviews.Create(r.Context(), &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: tok}}, metav1.CreateOptions{})
	if err != nil {
		return User{}, false, fmt.Errorf("TokenReview: %w", err)
	}
	ans := tokenAnswer{ok: out.Status.Authenticated}
	if ans.ok {
		u := out.Status.User
		ans.user = User{Name: u.Username, UID: u.UID, Groups: u.Groups}
		if len(u.Extra) > 0 {
			ans.user.Extra = map[string][]string{}
			for k, v := range u.Extra {
				ans.user.Extra[k] = v
			}
		}
	}
	a.cache.set(key, ans, a.ttl)
	return a.result(ans)
}

func (a *tokenAuthenticator) result(ans tokenAnswer) (User, bool, error) {
	if !ans.ok {
		// A token was presented and the API server refused it: that is a 401, not "anonymous".
		return User{}, false, errors.New("invalid bearer token")
	}
	return ans.user, true, nil
}

// chainAuthenticator tries each authenticator in turn; the first that recognises credentials
// decides. Without any credentials the request is anonymous when allowed.
type chainAuthenticator struct {
	chain     []Authenticator
	anonymous bool
}

func (c chainAuthenticator) Authenticate(r *http.Request) (User, bool, error) {
	var errs []error
	for _, a := range c.chain {
		u, ok, err := a.Authenticate(r)
		if ok {
			return u, true, nil
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return User{}, false, errors.Join(errs...)
	}
	if c.anonymous {
		return anonymous(), true, nil
	}
	return User{}, false, nil
}
