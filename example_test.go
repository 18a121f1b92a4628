package ghostcomm_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"log"
	"os"
	"time"

	"github.com/ProtonMail/gopenpgp/v2/crypto"

	"github.com/ghostcomm/ghostcomm"
	"github.com/ghostcomm/ghostcomm/torctl/tortest"
)

// Example builds a whole network on the in-process fake Tor: a Primary with
// three nodes, each on its own onion service, and a client that sends one
// message through them.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	tor := tortest.NewNetwork(tortest.Config{}) // or torctl: a real tor
	defer tor.Close()

	primary, err := ghostcomm.NewPrimary(ctx, tor.Controller(), tor.Dialer(), ghostcomm.PrimaryConfig{Nodes: 3})
	if err != nil {
		log.Fatal(err)
	}
	defer primary.Close()

	// The invite is the one line a user hands another.
	invite, err := ghostcomm.ParseInvite(primary.Invite(nil).String())
	if err != nil {
		log.Fatal(err)
	}
	client, err := ghostcomm.NewClient(tor.Dialer(), invite, ghostcomm.ClientConfig{})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	res, err := client.Send(ctx, []byte("hello"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("hops:", len(res.Route))
	fmt.Println("verified:", res.Verified)
	// Output:
	// hops: 3
	// verified: true
}

// Example_processing shows a Primary configured with the built-in hash
// processor on every node, and a client checking the result itself.
func Example_processing() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tor := tortest.NewNetwork(tortest.Config{})
	defer tor.Close()

	primary, err := ghostcomm.NewPrimary(ctx, tor.Controller(), tor.Dialer(), ghostcomm.PrimaryConfig{
		Nodes: 2,
		Processing: func(i int, _ io.Reader) ghostcomm.ProcessorSpec {
			return ghostcomm.HashSpec("sha256", []byte("salt"), 1, true)
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer primary.Close()
	client, err := ghostcomm.NewClient(tor.Dialer(), primary.Invite(nil), ghostcomm.ClientConfig{})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	res, err := client.Send(ctx, []byte("abc"))
	if err != nil {
		log.Fatal(err)
	}
	// hex(sha256("salt" || hex(sha256("salt" || "abc")))), as Python's hashlib
	// computes it: the seed's processing.
	fmt.Printf("%s\n", res.Data)
	// Output:
	// 32d2446112105a3e1f9d0dd60007c1d26ff3d744131e86a5f35e78e4d52dae97
}

// ExamplePrimaryConfig_stableInvite keeps an invite valid across restarts:
// the Primary's signing key and onion key are generated once, stored, and
// given back to every NewPrimary. (Here they live in memory; a real program
// keeps them in a state directory: see ExampleLoadOrCreateIdentity.)
func ExamplePrimaryConfig_stableInvite() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tor := tortest.NewNetwork(tortest.Config{})
	defer tor.Close()

	key, err := crypto.GenerateKey("my network", "", "x25519", 0) // gopenpgp v2
	if err != nil {
		log.Fatal(err)
	}
	_, onionKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		log.Fatal(err)
	}
	cfg := ghostcomm.PrimaryConfig{Nodes: 2, Key: key, OnionKey: onionKey}

	first, err := ghostcomm.NewPrimary(ctx, tor.Controller(), tor.Dialer(), cfg)
	if err != nil {
		log.Fatal(err)
	}
	invite := first.Invite(nil).String()
	first.Close()

	second, err := ghostcomm.NewPrimary(ctx, tor.Controller(), tor.Dialer(), cfg) // a restart
	if err != nil {
		log.Fatal(err)
	}
	defer second.Close()
	fmt.Println("same invite after a restart:", second.Invite(nil).String() == invite)
	// Output:
	// same invite after a restart: true
}

// ExampleLoadOrCreateIdentity keeps a Primary's keys in a state directory:
// the first run creates them, every later run loads them, so the invite
// stays the same across restarts.
func ExampleLoadOrCreateIdentity() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tor := tortest.NewNetwork(tortest.Config{})
	defer tor.Close()
	dir, err := os.MkdirTemp("", "ghostcomm-state") // mode 0700
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	var invites []string
	for range 2 { // a first run, then a restart
		id, _, err := ghostcomm.LoadOrCreateIdentity(dir, nil)
		if err != nil {
			log.Fatal(err)
		}
		cfg := ghostcomm.PrimaryConfig{Nodes: 2}
		id.Apply(&cfg) // Key, OnionKey, ClientAuth
		p, err := ghostcomm.NewPrimary(ctx, tor.Controller(), tor.Dialer(), cfg)
		if err != nil {
			log.Fatal(err)
		}
		invites = append(invites, p.Invite(nil).String())
		p.Close()
	}
	fmt.Println("same invite after a restart:", invites[0] == invites[1])
	// Output:
	// same invite after a restart: true
}
