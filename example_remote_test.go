package ghostcomm_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/ghostcomm/ghostcomm"
	"github.com/ghostcomm/ghostcomm/torctl/tortest"
)

// ExampleRemoteSource runs a Primary whose nodes are remote: two operators
// each run a RemoteNode with an identity key of their own, which the
// Primary's operator enrolled with the operator's label. The Primary holds
// none of their private keys. Here all run on one fake Tor; on real ones,
// each party uses its own tor (torctl).
func ExampleRemoteSource() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tor := tortest.NewNetwork(tortest.Config{})
	defer tor.Close()

	// The Primary's keys are known before it starts, so that the node
	// invite (its onion and key fingerprint) can be handed out first.
	dir, err := os.MkdirTemp("", "ghostcomm-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	id, err := ghostcomm.CreateIdentity(filepath.Join(dir, "primary"), nil)
	if err != nil {
		log.Fatal(err)
	}
	nodeInvite, _ := id.Invite("", 0)

	src, err := ghostcomm.NewRemoteSource(ghostcomm.RemoteSourceConfig{})
	if err != nil {
		log.Fatal(err)
	}
	for _, operator := range []string{"alice", "bob"} {
		_, key, _ := ed25519.GenerateKey(rand.Reader) // kept by the operator
		src.Enroll(key.Public().(ed25519.PublicKey), operator)
		node, err := ghostcomm.NewRemoteNode(tor.Controller(), tor.Dialer(), ghostcomm.RemoteNodeConfig{
			Identity: key, Invite: nodeInvite,
			Node: ghostcomm.NodeConfig{Processor: ghostcomm.HashSpec("sha256", nil, 1, true)},
		})
		if err != nil {
			log.Fatal(err)
		}
		defer node.Close()
	}

	cfg := ghostcomm.PrimaryConfig{Sources: []ghostcomm.NodeSource{src}, MinNodes: 2}
	id.Apply(&cfg)
	primary, err := ghostcomm.NewPrimary(ctx, tor.Controller(), tor.Dialer(), cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer primary.Close()

	client, err := ghostcomm.NewClient(tor.Dialer(), primary.Invite(nil), ghostcomm.ClientConfig{})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	res, err := client.Send(ctx, []byte("hello"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("hops:", len(res.Route), "verified:", res.Verified)
	fmt.Println("local nodes:", len(primary.Onions()))
	// Output:
	// hops: 2 verified: true
	// local nodes: 0
}
