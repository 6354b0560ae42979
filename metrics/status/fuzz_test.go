package status

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode"
)

// FuzzDurationJSON: any input decodes or fails cleanly, and what decodes
// re-encodes to a value that decodes to the same duration.
func FuzzDurationJSON(f *testing.F) {
	for _, s := range []string{`"1.5s"`, `0.1`, `"-3ms"`, `1e400`, `"9999999h"`, `null`, `""`, `{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var d Duration
		if err := json.Unmarshal(b, &d); err != nil {
			return
		}
		out, err := json.Marshal(d)
		if err != nil {
			t.Fatalf("marshal %v: %v", d, err)
		}
		var back Duration
		if err := json.Unmarshal(out, &back); err != nil || back != d {
			t.Fatalf("%s -> %s -> %v (%v), want %v", b, out, back, err, d)
		}
	})
}

// FuzzWriteText: whatever a check or HAProxy prints, the text status carries
// no control character other than the newlines and spaces it writes itself.
func FuzzWriteText(f *testing.F) {
	f.Add("backend down\n\x1b[2J", "VI_\x07", "[ALERT] \r\x00")
	f.Fuzz(func(t *testing.T, output, name, reloadErr string) {
		st := sampleStatus()
		st.Checks[0].Output = output
		st.Checks[0].Name = name
		st.Instances[0].Name = name
		st.HAProxy.LastReload.Error = reloadErr
		var buf bytes.Buffer
		if err := WriteText(&buf, st); err != nil {
			t.Fatal(err)
		}
		for _, r := range buf.String() {
			if r != '\n' && !unicode.IsPrint(r) {
				t.Fatalf("control character %q in text", r)
			}
		}
		if !strings.Contains(buf.String(), " VRRP Instance = ") {
			t.Fatal("instance header missing")
		}
	})
}
