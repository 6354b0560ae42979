package vrrp

import (
	"fmt"
	"time"
)

// Timer units of the two protocol versions: VRRPv2 counts the advert interval in seconds,
// VRRPv3 in centiseconds (RFC 5798 section 5.2.7).
const (
	v2TimerUnit = time.Second
	v3TimerUnit = 10 * time.Millisecond

	maxV2Interval = 255 * v2TimerUnit  // 8-bit field, seconds
	maxV3Interval = 4095 * v3TimerUnit // 12-bit field, centiseconds
)

// CheckAdvertInterval says whether VRRP version carries interval d on the wire: VRRPv2 whole
// seconds from 1s to 255s (an 8-bit field), VRRPv3 10ms steps from 10ms to 40.95s (12 bits of
// centiseconds). The configuration, the state machine and the codec all ask here.
func CheckAdvertInterval(version int, d time.Duration) error {
	switch version {
	case 2:
		if d < v2TimerUnit || d > maxV2Interval || d%v2TimerUnit != 0 {
			return fmt.Errorf("%v: VRRPv2 carries whole seconds 1..255 (for shorter intervals use version 3)", d)
		}
	case 3:
		if d < v3TimerUnit || d > maxV3Interval || d%v3TimerUnit != 0 {
			return fmt.Errorf("%v: VRRPv3 carries 10ms steps from 10ms to 40.95s", d)
		}
	default:
		return fmt.Errorf("version %d: must be 2 or 3", version)
	}
	return nil
}
