package server

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SubjectAccessReviews is the part of client-go's SubjectAccessReviewInterface the webhook
// authorizer uses.
type SubjectAccessReviews interface {
	Create(ctx context.Context, sar *authzv1.SubjectAccessReview, opts metav1.CreateOptions) (*authzv1.SubjectAccessReview, error)
}

// alwaysAllow is authorization mode AlwaysAllow.
type alwaysAllow struct{}

func (alwaysAllow) Authorize(context.Context, User, Attributes) (bool, string, error) {
	return true, "", nil
}

// denyAll is mode Webhook without an API server to ask.
type denyAll struct{}

func (denyAll) Authorize(context.Context, User, Attributes) (bool, string, error) {
	return false, "no API server to authorize against", nil
}

// webhookAuthorizer asks SubjectAccessReview and caches allowed and denied answers for their
// own TTLs; failed calls are not cached.
type webhookAuthorizer struct {
	reviews           SubjectAccessReviews
	allowTTL, denyTTL time.Duration
	cache             *ttlCache[sarAnswer]
}

type sarAnswer struct {
	allowed bool
	reason  string
}

func newWebhookAuthorizer(reviews SubjectAccessReviews, allowTTL, denyTTL time.Duration, now func() time.Time) *webhookAuthorizer {
	return &webhookAuthorizer{reviews: reviews, allowTTL: allowTTL, denyTTL: denyTTL, cache: newTTLCache[sarAnswer](now, 8192)}
}

func sarFor(u User, a Attributes) *authzv1.SubjectAccessReview {
	extra := map[string]authzv1.ExtraValue{}
	for k, v := range u.Extra {
		extra[k] = v
	}
	if len(extra) == 0 {
		extra = nil
	}
	return &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
		User: u.Name, UID: u.UID, Groups: u.Groups, Extra: extra,
		ResourceAttributes: &authzv1.ResourceAttributes{
			Verb: a.Verb, Group: "", Version: "v1", Resource: "nodes", Subresource: a.Subresource, Name: a.NodeName,
		},
	}}
}

func (w *webhookAuthorizer) Authorize(ctx context.Context, u User, a Attributes) (bool, string, error) {
	sar := sarFor(u, a)
	kb, err := json.Marshal(sar.Spec)
	if err != nil {
		return false, "", err
	}
	key := string(kb)
	if ans, ok := w.cache.get(key); ok {
		return ans.allowed, ans.reason, nil
	}
	out, err := w.reviews.Create(ctx, sar, metav1.CreateOptions{})
	if err != nil {
		return false, "", fmt.Errorf("SubjectAccessReview: %w", err)
	}
	ans := sarAnswer{allowed: out.Status.Allowed && !out.Status.Denied, reason: out.Status.Reason}
	ttl := w.denyTTL
	if ans.allowed {
		ttl = w.allowTTL
	}
	w.cache.set(key, ans, ttl)
	return ans.allowed, ans.reason, nil
}
