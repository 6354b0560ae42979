package checks

import (
	"bytes"
	"fmt"
	"testing"
)

func BenchmarkParseStatsCSV(b *testing.B) {
	up := readStats(b, "up")
	header, rows, _ := bytes.Cut(up, []byte("\n"))
	// About 1000 rows: a large HAProxy configuration.
	big := append(append([]byte{}, header...), '\n')
	for len(big) < 100*len(up) {
		big = append(big, rows...)
	}
	for _, in := range []struct {
		name string
		data []byte
	}{{"haproxy2.6-10rows", up}, {fmt.Sprintf("%dKiB", len(big)>>10), big}} {
		b.Run(in.name, func(b *testing.B) {
			b.SetBytes(int64(len(in.data)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseStatsCSV(in.data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkEffectivePriority(b *testing.B) {
	track := map[string]int{"haproxy": -20, "haproxy_stats": -20, "link": 0}
	up := map[string]bool{"haproxy": false, "haproxy_stats": true, "link": true}
	b.ReportAllocs()
	for b.Loop() {
		EffectivePriority(110, track, up)
	}
}
