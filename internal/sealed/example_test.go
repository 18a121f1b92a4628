package sealed_test

import (
	"fmt"

	"github.com/ghostcomm/ghostcomm/internal/replay"
	"github.com/ghostcomm/ghostcomm/internal/sealed"
)

// A packet over three hops in relay mode, and the exit's answer back.
func Example() {
	var keys []*sealed.PrivateKey
	var route []sealed.Hop
	for i := range 3 {
		k, _ := sealed.GenerateKey(nil)
		keys = append(keys, k)
		route = append(route, sealed.Hop{Index: byte(i), Key: k.PublicKey()})
	}
	sealed.EqualBudgets(route, 5000)

	// The client.
	pkt, sent, err := sealed.Build(nil, sealed.Small, sealed.Relay, route, []byte("hello"))
	if err != nil {
		panic(err)
	}

	// The hops, each with its replay cache; the packet is processed in place.
	rs := make([]sealed.Result, 3)
	for i := range 3 {
		if err := sealed.Process(keys[i], pkt, replay.New(100), &rs[i]); err != nil {
			panic(err)
		}
		if rs[i].Command == sealed.CmdRelay {
			fmt.Println("hop", i+1, "relays to node", rs[i].Next, "a packet of", len(pkt), "bytes")
		} else {
			fmt.Println("hop", i+1, "is the exit")
		}
	}
	data, err := rs[2].Data(pkt)
	if err != nil {
		panic(err)
	}
	fmt.Printf("exit reads %q\n", data)

	// The reply: written by the exit, wrapped by hops 2 and 1.
	reply := make([]byte, rs[2].Class().Size())
	if err := rs[2].Answer(reply, []byte("hi")); err != nil {
		panic(err)
	}
	rs[1].WrapReply(reply)
	rs[0].WrapReply(reply)
	rep, err := sent.OpenReply(reply)
	if err != nil {
		panic(err)
	}
	fmt.Printf("client reads %q from depth %d\n", rep.Body, rep.Depth)
	// Output:
	// hop 1 relays to node 1 a packet of 2048 bytes
	// hop 2 relays to node 2 a packet of 2048 bytes
	// hop 3 is the exit
	// exit reads "hello"
	// client reads "hi" from depth 3
}
