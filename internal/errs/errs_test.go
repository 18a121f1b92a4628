package errs

import (
	"context"
	"errors"
	"testing"
	"time"
)

// lateCtx has a deadline that has passed but says it is not done yet, as a
// context does for a moment after its deadline, before its timer fires.
type lateCtx struct{ context.Context }

func (lateCtx) Deadline() (time.Time, bool) { return time.Now().Add(-time.Millisecond), true }

func TestCtxEnded(t *testing.T) {
	if err := CtxEnded(context.Background()); err != nil {
		t.Errorf("no deadline: %v", err)
	}
	future, cancel := context.WithTimeout(context.Background(), time.Hour)
	if err := CtxEnded(future); err != nil {
		t.Errorf("deadline ahead: %v", err)
	}
	cancel()
	if err := CtxEnded(future); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	if err := CtxEnded(lateCtx{context.Background()}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("deadline passed, ctx not yet done: %v", err)
	}
}
