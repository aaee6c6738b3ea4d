// Package tracked keeps the set of Clients whose Stats a collector reports
// at scrape time.
package tracked

import (
	"sync"

	"github.com/renewlock/renewlock"
)

// Clients is a set of Clients. The zero value is empty and ready to use.
type Clients struct {
	mu      sync.Mutex
	clients map[*renewlock.Client]int // how many times each was added
}

// Add adds c and returns the function that removes it again; calling that
// more than once does nothing more.
func (s *Clients) Add(c *renewlock.Client) (remove func()) {
	s.mu.Lock()
	if s.clients == nil {
		s.clients = make(map[*renewlock.Client]int)
	}
	s.clients[c]++
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.clients[c]--; s.clients[c] <= 0 {
				delete(s.clients, c)
			}
		})
	}
}

// Stats returns the sum of the Stats of the Clients in the set. Each Client
// is counted once, however often it was added.
func (s *Clients) Stats() renewlock.Stats {
	s.mu.Lock()
	cs := make([]*renewlock.Client, 0, len(s.clients))
	for c := range s.clients {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	var sum renewlock.Stats
	for _, c := range cs {
		st := c.Stats()
		sum.Held += st.Held
		sum.Waiting += st.Waiting
	}
	return sum
}
