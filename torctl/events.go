package torctl

import (
	"sync"
)

// maxEarlyUploads bounds the HS_DESC UPLOADED service IDs the router keeps
// for onions whose ADD_ONION reply has not been read yet.
const maxEarlyUploads = 1024

// uploadRouter routes HS_DESC UPLOADED events, read from the event
// connection, to the CreateOnion calls waiting for them.
//
// The event connection subscribes to HS_DESC before any ADD_ONION is sent.
// A CreateOnion with a tor-generated key learns its service ID only from the
// ADD_ONION reply, and its first upload may be reported before then, so
// while any CreateOnion is between begin and wait, uploads nobody waits for
// are kept (at most maxEarlyUploads) and claimed by wait.
type uploadRouter struct {
	mu         sync.Mutex
	waiters    map[string][]chan struct{} // closed at the first upload
	pending    int                        // CreateOnion calls between begin and end
	early      map[string]bool
	earlyOrder []string
	err        error         // why the event connection ended
	dead       chan struct{} // closed when the event connection ends
}

func newUploadRouter() *uploadRouter {
	return &uploadRouter{
		waiters: map[string][]chan struct{}{},
		early:   map[string]bool{},
		dead:    make(chan struct{}),
	}
}

// begin is called before ADD_ONION is sent; end once wait has been called
// (or ADD_ONION failed).
func (r *uploadRouter) begin() {
	r.mu.Lock()
	r.pending++
	r.mu.Unlock()
}

func (r *uploadRouter) end() {
	r.mu.Lock()
	r.pending--
	if r.pending == 0 {
		clear(r.early)
		r.earlyOrder = r.earlyOrder[:0]
	}
	r.mu.Unlock()
}

// wait returns a channel closed at the first upload of id's descriptor
// (already closed if it was uploaded since begin), and a func to stop
// waiting.
func (r *uploadRouter) wait(id string) (<-chan struct{}, func()) {
	ch := make(chan struct{})
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.early[id] {
		delete(r.early, id)
		close(ch)
		return ch, func() {}
	}
	r.waiters[id] = append(r.waiters[id], ch)
	return ch, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		ws := r.waiters[id]
		for i, w := range ws {
			if w == ch {
				ws = append(ws[:i:i], ws[i+1:]...)
				break
			}
		}
		if len(ws) == 0 {
			delete(r.waiters, id)
		} else {
			r.waiters[id] = ws
		}
	}
}

// uploaded handles an HS_DESC UPLOADED event for id.
func (r *uploadRouter) uploaded(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ws, ok := r.waiters[id]; ok {
		for _, w := range ws {
			close(w)
		}
		delete(r.waiters, id)
		return
	}
	if r.pending == 0 || r.early[id] {
		return
	}
	if len(r.earlyOrder) >= maxEarlyUploads {
		delete(r.early, r.earlyOrder[0])
		r.earlyOrder = r.earlyOrder[1:]
	}
	r.early[id] = true
	r.earlyOrder = append(r.earlyOrder, id)
}

// fail records that the event connection ended; waiters see dead closed.
func (r *uploadRouter) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = err
		close(r.dead)
	}
}

// failure returns why the event connection ended.
func (r *uploadRouter) failure() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}
