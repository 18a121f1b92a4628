package tortest_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/ghostcomm/ghostcomm"
	"github.com/ghostcomm/ghostcomm/torctl/tortest"
)

// A service behind a fake onion, reached through the fake dialer.
func Example() {
	tor := tortest.NewNetwork(tortest.Config{})
	defer tor.Close()
	ctx := context.Background()

	// The service: an echo server on loopback.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()

	// Publish it as an onion service.
	ctrl := tor.Controller()
	onion, err := ctrl.CreateOnion(ctx, ghostcomm.OnionConfig{
		VirtualPort: 80,
		Target:      ln.Addr().String(),
	})
	if err != nil {
		panic(err)
	}
	fmt.Println("service id length:", len(onion.ServiceID))

	// A client dials the onion address.
	c, err := tor.Dialer().DialContext(ctx, "tcp", onion.Addr())
	if err != nil {
		panic(err)
	}
	defer c.Close()
	fmt.Fprintln(c, "hello through the fake tor")
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		panic(err)
	}
	fmt.Print(line)

	// Once removed, the service is not found, as with tor.
	if err := ctrl.RemoveOnion(ctx, onion.ServiceID); err != nil {
		panic(err)
	}
	_, err = tor.Dialer().DialContext(ctx, "tcp", onion.Addr())
	fmt.Println("not found after removal:", errors.Is(err, ghostcomm.ErrOnionNotFound))

	// Output:
	// service id length: 56
	// hello through the fake tor
	// not found after removal: true
}

// Failures on demand: a partitioned service is unreachable until healed.
func ExampleNetwork_Partition() {
	tor := tortest.NewNetwork(tortest.Config{})
	defer tor.Close()
	ctx := context.Background()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	onion, err := tor.Controller().CreateOnion(ctx, ghostcomm.OnionConfig{VirtualPort: 80, Target: ln.Addr().String()})
	if err != nil {
		panic(err)
	}
	dialer := tor.Dialer()

	tor.Partition(onion.ServiceID)
	_, err = dialer.DialContext(ctx, "tcp", onion.Addr())
	var de *tortest.DialError
	fmt.Println(errors.Is(err, ghostcomm.ErrOnionUnreachable), errors.As(err, &de) && de.Code == tortest.CodeIntroFailed)

	tor.Heal(onion.ServiceID)
	c, err := dialer.DialContext(ctx, "tcp", onion.Addr())
	fmt.Println(err)
	c.Close()
	fmt.Println("dials:", tor.Stats(onion.ServiceID).Dials)

	// Output:
	// true true
	// <nil>
	// dials: 2
}

// A fake clock runs timers when told to, in order.
func ExampleClock() {
	clock := tortest.NewClock(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	done := make(chan string, 2)
	clock.AfterFunc(2*time.Hour, func() { done <- "rotate at " + clock.Now().Format("15:04") })
	clock.AfterFunc(time.Hour, func() { done <- "expire at " + clock.Now().Format("15:04") })

	clock.Advance(3 * time.Hour) // returns once both callbacks have run
	fmt.Println(<-done)
	fmt.Println(<-done)
	fmt.Println(clock.Now().Format("15:04"))

	// Output:
	// expire at 01:00
	// rotate at 02:00
	// 03:00
}
