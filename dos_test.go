package ghostcomm_test

import (
	"testing"

	"github.com/ghostcomm/ghostcomm"
)

// TestPrimaryOnionPoW: the Primary's onion asks tor for the proof-of-work
// defence unless told otherwise; nodes' onions do not, unless their template
// does.
func TestPrimaryOnionPoW(t *testing.T) {
	tuned := ghostcomm.PoWConfig{Enabled: true, QueueRate: 20, QueueBurst: 40}
	for _, tc := range []struct {
		name           string
		cfg            ghostcomm.PrimaryConfig
		primary, nodes ghostcomm.PoWConfig
	}{
		{"default", ghostcomm.PrimaryConfig{}, ghostcomm.PoWConfig{Enabled: true}, ghostcomm.PoWConfig{}},
		{"off", ghostcomm.PrimaryConfig{PoW: &ghostcomm.PoWConfig{}}, ghostcomm.PoWConfig{}, ghostcomm.PoWConfig{}},
		{"tuned", ghostcomm.PrimaryConfig{PoW: &tuned, Node: ghostcomm.NodeConfig{PoW: tuned}}, tuned, tuned},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Nodes = 2
			tn := newTestNet(t, tc.cfg, ghostcomm.ClientConfig{})
			if got, ok := tn.ctrl.PoW(tn.primary.Onion().ServiceID); !ok || got != tc.primary {
				t.Errorf("primary onion: PoW %+v, %v; want %+v", got, ok, tc.primary)
			}
			for _, o := range tn.primary.Onions() {
				if got, ok := tn.ctrl.PoW(o.ServiceID); !ok || got != tc.nodes {
					t.Errorf("node onion %s: PoW %+v, %v; want %+v", o.ServiceID, got, ok, tc.nodes)
				}
			}
		})
	}
}
