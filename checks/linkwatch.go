package checks

import (
	"context"
	"fmt"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// watchLinks subscribes to the link updates of namespace ns (nil: the current one), calls
// subscribed once the subscription is in place (so that a state read then misses nothing), and
// hands every update to update until ctx is done. An error means links cannot be followed.
func watchLinks(ctx context.Context, ns *netns.NsHandle, buffer int, subscribed func() error, update func(netlink.LinkUpdate)) error {
	updates := make(chan netlink.LinkUpdate, buffer)
	done := make(chan struct{})
	subErr := make(chan error, 1)
	err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{
		Namespace: ns,
		ErrorCallback: func(err error) {
			select {
			case subErr <- err:
			default:
			}
		},
	})
	if err != nil {
		return fmt.Errorf("subscribe to link updates: %w", err)
	}
	defer func() {
		close(done)
		for range updates { // the subscription goroutine ends once its socket is closed
		}
	}()
	if err := subscribed(); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case u, ok := <-updates:
			if !ok {
				select {
				case err := <-subErr:
					return fmt.Errorf("link updates: %w", err)
				default:
					return fmt.Errorf("link updates ended")
				}
			}
			if u.Link != nil {
				update(u)
			}
		}
	}
}
