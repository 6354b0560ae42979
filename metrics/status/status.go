// Package status is hapair's status API: the document of GET /status (JSON), its text for
// `hapair status` and the SIGUSR1 dump, and the HTTP listener that serves /metrics (the
// registry's handler, from package metrics), /status and /healthz.
package status

import (
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/hapair/hapair/supervisor"
)

// Source produces the status document served at GET /status, printed by
// `hapair status` and written by the SIGUSR1 dump.
type Source interface {
	Status() Status
}

// Func adapts a function to Source.
type Func func() Status

// Status implements Source.
func (f Func) Status() Status { return f() }

// Status is the JSON document of GET /status. Field names are a contract with
// `hapair status --json` users: add fields, do not rename them.
type Status struct {
	RouterID    string           `json:"router_id"`
	Version     string           `json:"version,omitempty"` // hapair's version
	GeneratedAt time.Time        `json:"generated_at"`
	PID         int              `json:"pid,omitempty"` // hapair's own pid: `hapair reload` signals it
	Drained     bool             `json:"drained"`       // `hapair drain` in force: VIPs left to the peers
	Config      *ConfigStatus    `json:"config,omitempty"`
	Instances   []InstanceStatus `json:"instances"`
	HAProxy     HAProxyStatus    `json:"haproxy"`
	Checks      []CheckStatus    `json:"checks"`
	BGP         *BGPStatus       `json:"bgp,omitempty"` // absent without a bgp section
}

// InstanceStatus is one VRRP instance.
type InstanceStatus struct {
	Name              string      `json:"name"`
	Interface         string      `json:"interface"`
	VRID              uint8       `json:"vrid"`
	Version           int         `json:"version"` // VRRP version, 2 or 3
	State             string      `json:"state"`   // INIT, BACKUP, MASTER, FAULT
	BasePriority      int         `json:"base_priority"`
	EffectivePriority int         `json:"effective_priority"`
	MasterAddress     string      `json:"master_address"` // "" while unknown
	VIPs              []string    `json:"vips"`
	Since             time.Time   `json:"since"`    // entered the current state
	InState           Duration    `json:"in_state"` // time in state when the document was made
	LastTransition    *Transition `json:"last_transition"`
}

// Transition is the last state change of an instance.
type Transition struct {
	From   string    `json:"from"`
	To     string    `json:"to"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
}

// HAProxyStatus is the supervised HAProxy.
type HAProxyStatus struct {
	PID        int           `json:"pid"` // 0 while not running
	Up         bool          `json:"up"`
	Restarts   int           `json:"restarts"`
	LastExit   *int          `json:"last_exit"` // null until it first exits
	LastReload *ReloadStatus `json:"last_reload"`
	Backoff    Duration      `json:"backoff"` // wait before the next restart, 0 when none pending
}

// ReloadStatus is the last reload.
type ReloadStatus struct {
	At     time.Time               `json:"at"`
	Result supervisor.ReloadResult `json:"result"` // ok, refused, failed
	Error  string                  `json:"error,omitempty"`
}

// ConfigStatus is hapair's own configuration file and its reloads (SIGHUP).
type ConfigStatus struct {
	File     string    `json:"file"`      // the file hapair was started with and reloads
	LoadedAt time.Time `json:"loaded_at"` // when the running configuration was loaded (start or last good reload)
	// ReloadRequests counts the SIGHUPs received since start. A reload attempt answers every
	// request received before it began: `hapair reload` waits for an attempt whose Request is at
	// least the count it saw before signalling plus one.
	ReloadRequests uint64        `json:"reload_requests"`
	LastReload     *ConfigReload `json:"last_reload"` // the last attempt, null before the first
}

// ConfigReload is one reload attempt of hapair's configuration.
type ConfigReload struct {
	Request  uint64                  `json:"request"` // ReloadRequests when the attempt began
	At       time.Time               `json:"at"`      // when it began
	Duration Duration                `json:"duration"`
	Result   supervisor.ReloadResult `json:"result"` // ok (applied), refused (nothing was touched), failed (HAProxy's reload failed: hapair's settings stay as they were)
	Error    string                  `json:"error,omitempty"`
}

// CheckStatus is one tracked check.
type CheckStatus struct {
	Name     string    `json:"name"`
	Up       bool      `json:"up"`      // tracked status, after fall/rise
	LastOK   bool      `json:"last_ok"` // the last probe's own result
	Output   string    `json:"output"`
	Duration Duration  `json:"duration"`
	At       time.Time `json:"at"`
}

// Duration is a time.Duration written in JSON as Go's string form ("1.5s"),
// which people and scripts read more easily than nanoseconds. It decodes that
// form or a number of seconds.
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("decode duration %q: %w", s, err)
		}
		*d = Duration(v)
		return nil
	}
	var secs float64
	if err := json.Unmarshal(b, &secs); err != nil {
		return fmt.Errorf("decode duration %s: want a string like \"1.5s\" or seconds", b)
	}
	// float64 to int64 conversion of an out-of-range value is undefined.
	if math.Abs(secs) > math.MaxInt64/float64(time.Second) {
		return fmt.Errorf("decode duration %s: out of range", b)
	}
	*d = Duration(secs * float64(time.Second))
	return nil
}

// String returns Go's duration form.
func (d Duration) String() string { return time.Duration(d).String() }
