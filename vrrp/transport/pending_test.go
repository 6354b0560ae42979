package transport

import (
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestReadPendingDeliversOnTheCaller: ReadPending delivers what the receiving socket holds on
// the caller's goroutine, before it returns, to each member of the shared socket, even when the
// reader has not run since the adverts arrived. With one P and a caller that does not yield,
// the reader cannot run in between: without ReadPending nothing would be delivered yet, which is
// what a BACKUP's loop saw when its timer woke it before the reader.
func TestReadPendingDeliversOnTheCaller(t *testing.T) {
	p, a, b := joinedPair(t)
	var other *Member // a second member of b's socket: its adverts are delivered too
	p.B.MustDo(t, func() (err error) {
		other, err = b.sock.hub.Join(Options{Interface: p.BIf, Family: 4}, advertV2[1]+1)
		return
	})
	t.Cleanup(func() { other.Close() })
	var aOther *Member
	p.A.MustDo(t, func() (err error) {
		aOther, err = a.sock.hub.Join(Options{Interface: p.AIf, Family: 4}, advertV2[1]+1)
		return
	})
	t.Cleanup(func() { aOther.Close() })
	advertOther := append([]byte(nil), advertV2...)
	advertOther[1]++

	var mu sync.Mutex
	var inline, byReader [2]int // per member: delivered within ReadPending, by the reader
	handler := func(i int) Handler {
		return func([]byte, netip.Addr, netip.Addr, int) {
			buf := make([]byte, 8192)
			onCaller := strings.Contains(string(buf[:runtime.Stack(buf, false)]), "TestReadPendingDeliversOnTheCaller")
			mu.Lock()
			defer mu.Unlock()
			if onCaller {
				inline[i]++
			} else {
				byReader[i]++
			}
		}
	}
	b.Receive(handler(0))
	other.Receive(handler(1))

	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	const n = 5
	for round := range 20 {
		mu.Lock()
		inline, byReader = [2]int{}, [2]int{}
		mu.Unlock()
		// Raw sendmsg calls (the transport's own) do not yield, and a veth delivers in the
		// sender's softirq: the adverts are queued on b's socket when the last returns.
		for range n {
			if err := a.WriteAdvert(advertV2); err != nil {
				t.Fatal(err)
			}
			if err := aOther.WriteAdvert(advertOther); err != nil {
				t.Fatal(err)
			}
		}
		b.ReadPending()
		mu.Lock()
		got, reader := inline, byReader
		mu.Unlock()
		if got[0]+reader[0] != n || got[1]+reader[1] != n {
			t.Fatalf("round %d: after ReadPending, %v delivered within it and %v by the reader, want %d each", round, got, reader, n)
		}
		if got[0] == 0 || got[1] == 0 {
			t.Fatalf("round %d: none delivered within ReadPending for some member: %v within, %v by the reader", round, got, reader)
		}
		time.Sleep(10 * time.Millisecond) // the reader wakes, and finds the queue empty
		mu.Lock()
		late := byReader
		mu.Unlock()
		if late != reader {
			t.Fatalf("round %d: the reader delivered %v after ReadPending: delivered twice or missed", round, late)
		}
	}

	// A closed member's ReadPending does nothing, and does not block.
	other.Close()
	other.ReadPending()
}

// TestReadPendingEndsUnderAFlood: ReadPending returns after a bounded number of packets while
// a flood keeps the queue from ever emptying. It runs on the loop that runs every instance's
// turns: unbounded, a flood during a takeover held all of them for as long as it lasted.
func TestReadPendingEndsUnderAFlood(t *testing.T) {
	_, a, b := joinedPair(t)
	// A slow handler (on the caller's goroutine, within ReadPending) drains far fewer packets
	// a second than the flood sends.
	var delivered atomic.Int64
	b.Receive(func([]byte, netip.Addr, netip.Addr, int) {
		delivered.Add(1)
		time.Sleep(200 * time.Microsecond)
	})
	stop := make(chan struct{})
	flooding := make(chan struct{})
	go func() {
		defer close(flooding)
		end := time.After(6 * time.Second) // unbounded, ReadPending would return with it
		for {
			select {
			case <-stop:
				return
			case <-end:
				return
			default:
			}
			for range 64 {
				_ = a.WriteAdvert(advertV2)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	defer func() { close(stop); <-flooding }()
	time.Sleep(200 * time.Millisecond) // the queue fills

	start := time.Now()
	b.ReadPending()
	took := time.Since(start)
	// 512 packets at 200 µs or more each: at least 0.1 s; the flood lasts 6 s.
	if took > 3*time.Second {
		t.Fatalf("ReadPending took %s under a flood, want it bounded (512 packets)", took)
	}
	t.Logf("ReadPending returned after %s under a flood; %d packets delivered so far", took.Round(time.Millisecond), delivered.Load())
}
