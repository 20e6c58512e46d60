package watch

import (
	"fmt"

	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/tools/cache"
)

// Handler receives an informer's events as T (a pointer type such as
// *corev1.Pod). Nil funcs ignore their event.
//
// Unlike client-go's TypedResourceEventHandlerFuncs, OnDelete always gets an
// object: a tombstone (cache.DeletedFinalStateUnknown, left when the watch
// missed the delete) is unwrapped to the last state the cache saw. Events
// carrying anything else than T are reported through
// utilruntime.HandleError (klog, which common/log routes to zap) and
// dropped rather than panicking the agent.
type Handler[T any] struct {
	OnAdd    func(obj T)
	OnUpdate func(oldObj, newObj T)
	OnDelete func(obj T)
}

// ResourceEventHandler adapts h for cache.SharedInformer.AddEventHandler.
func (h Handler[T]) ResourceEventHandler() cache.ResourceEventHandler {
	return handlerAdapter[T]{h}
}

// AddHandler registers h with inf.
func AddHandler[T any](inf cache.SharedInformer, h Handler[T]) (cache.ResourceEventHandlerRegistration, error) {
	return inf.AddEventHandler(h.ResourceEventHandler())
}

type handlerAdapter[T any] struct{ h Handler[T] }

func (a handlerAdapter[T]) OnAdd(obj any, _ bool) {
	if a.h.OnAdd == nil {
		return
	}
	if t, ok := as[T]("add", obj); ok {
		a.h.OnAdd(t)
	}
}

func (a handlerAdapter[T]) OnUpdate(oldObj, newObj any) {
	if a.h.OnUpdate == nil {
		return
	}
	o, ok := as[T]("update", oldObj)
	if !ok {
		return
	}
	if n, ok := as[T]("update", newObj); ok {
		a.h.OnUpdate(o, n)
	}
}

func (a handlerAdapter[T]) OnDelete(obj any) {
	if a.h.OnDelete == nil {
		return
	}
	if t, ok := Unwrap[T](obj); ok {
		a.h.OnDelete(t)
		return
	}
	utilruntime.HandleError(fmt.Errorf("watch: delete event with %T, want %T or a tombstone holding one", describe(obj), *new(T)))
}

// Unwrap returns obj as T, looking inside a delete tombstone if obj is one.
func Unwrap[T any](obj any) (T, bool) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	t, ok := obj.(T)
	return t, ok
}

func as[T any](event string, obj any) (T, bool) {
	t, ok := obj.(T)
	if !ok {
		utilruntime.HandleError(fmt.Errorf("watch: %s event with %T, want %T", event, obj, *new(T)))
	}
	return t, ok
}

// describe names what a tombstone holds, for the error.
func describe(obj any) any {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return tomb.Obj
	}
	return obj
}
