package torctl

import (
	"context"
	"errors"
	"sync"

	"github.com/ghostcomm/ghostcomm"
)

// Spread returns a ghostcomm.TorController that creates each onion service
// on the next of ctrls in turn, and removes it through the one that created
// it. Give a Primary a Spread of several tor processes to spread its nodes'
// onion services (and their traffic) across them.
//
// It is safe for concurrent use. RemoveOnion of a service it did not create
// is passed to every controller, each of which ignores services it does not
// know. Spread does not own ctrls: closing them is the caller's.
func Spread(ctrls ...ghostcomm.TorController) ghostcomm.TorController {
	return &spread{ctrls: ctrls, owner: map[string]ghostcomm.TorController{}}
}

type spread struct {
	ctrls []ghostcomm.TorController

	mu    sync.Mutex
	next  int
	owner map[string]ghostcomm.TorController
}

func (s *spread) CreateOnion(ctx context.Context, conf ghostcomm.OnionConfig) (ghostcomm.Onion, error) {
	if len(s.ctrls) == 0 {
		return ghostcomm.Onion{}, errors.New("torctl: Spread of no controllers")
	}
	s.mu.Lock()
	c := s.ctrls[s.next%len(s.ctrls)]
	s.next++
	s.mu.Unlock()
	o, err := c.CreateOnion(ctx, conf)
	if err != nil {
		return o, err
	}
	s.mu.Lock()
	s.owner[o.ServiceID] = c
	s.mu.Unlock()
	return o, nil
}

func (s *spread) RemoveOnion(ctx context.Context, serviceID string) error {
	s.mu.Lock()
	c, ok := s.owner[serviceID]
	delete(s.owner, serviceID)
	s.mu.Unlock()
	if ok {
		return c.RemoveOnion(ctx, serviceID)
	}
	var errs []error
	for _, c := range s.ctrls {
		errs = append(errs, c.RemoveOnion(ctx, serviceID))
	}
	return errors.Join(errs...)
}
