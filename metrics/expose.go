package metrics

import (
	"cmp"
	"compress/gzip"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// Why /metrics writes the text format itself: through client_golang, a scrape of 255
// instances (19,000 series) built a dto.MetricFamily message per family and a dto.Metric with
// its label pairs per series, all alive at once until encoded: 5 MB of garbage a scrape
// (BenchmarkScrape255), and a scraped hapair's resident memory 8 to 13 MiB above an unscraped
// one's at GOGC=50. The per-instance series are written here straight from the instances'
// values into the response, a few KiB at a time; the rest (Go and process collectors,
// HAProxy, checks, BGP: a few dozen series whatever the number of instances) still goes
// through client_golang's registry and text encoder. Names, labels, values, types, help and
// the order of families and series are those the registry's exposition has
// (TestTextExpositionMatchesRegistry). A client that asks for the protobuf format gets the
// registry's exposition of everything.

// exposition is the /metrics handler.
type exposition struct {
	m     *Metrics
	proto http.Handler // the registry's exposition, for the formats other than text
}

// Handler returns the /metrics handler.
func (m *Metrics) Handler() http.Handler {
	return &exposition{m: m, proto: promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		// A collector failing (e.g. /proc unreadable) must not hide the rest.
		ErrorHandling: promhttp.ContinueOnError,
	})}
}

func (e *exposition) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	format := expfmt.Negotiate(r.Header)
	if format.FormatType() != expfmt.TypeTextPlain {
		e.proto.ServeHTTP(w, r)
		return
	}
	// The families that are not per instance; a collector that fails does not hide the rest.
	static, _ := e.m.static.Gather()
	w.Header().Set("Content-Type", string(format))
	var out io.Writer = w
	if acceptsGzip(r) {
		w.Header().Set("Content-Encoding", "gzip")
		gz := gzipPool.Get().(*gzip.Writer)
		gz.Reset(w)
		defer func() { _ = gz.Close(); gzipPool.Put(gz) }()
		out = gz
	}
	e.m.writeText(out, static)
}

// gzipPool holds the compressors of scrapes, as promhttp's does (a gzip.Writer is about 800 KB).
var gzipPool = sync.Pool{New: func() any { return gzip.NewWriter(nil) }}

// acceptsGzip: the client's Accept-Encoding lists gzip with a non-zero weight.
func acceptsGzip(r *http.Request) bool {
	for _, h := range r.Header.Values("Accept-Encoding") {
		for _, part := range strings.Split(h, ",") {
			name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			if !strings.EqualFold(strings.TrimSpace(name), "gzip") {
				continue
			}
			q := strings.TrimSpace(params)
			if v, ok := strings.CutPrefix(q, "q="); ok {
				if f, err := strconv.ParseFloat(v, 64); err == nil && f == 0 {
					return false
				}
			}
			return true
		}
	}
	return false
}

// writeText writes the text exposition: the families of static and the per-instance ones,
// merged in the order of their names, as the registry sorts them.
func (m *Metrics) writeText(out io.Writer, static []*dto.MetricFamily) {
	ims := m.snapshot()
	slices.SortFunc(ims, func(a, b *InstanceMetrics) int { return cmp.Compare(a.name, b.name) })
	m.mu.Lock()
	compat := m.compatEnabled
	m.mu.Unlock()
	tw := &textWriter{out: out, buf: make([]byte, 0, textBufSize)}
	fams := instanceFamilies
	if len(ims) == 0 {
		fams = nil
	}
	for len(static) > 0 || len(fams) > 0 {
		if len(fams) == 0 || (len(static) > 0 && static[0].GetName() < fams[0].name) {
			tw.flush()
			if tw.err == nil {
				_, tw.err = expfmt.MetricFamilyToText(out, static[0])
			}
			static = static[1:]
			continue
		}
		if f := fams[0]; !f.compat || compat {
			tw.buf = append(tw.buf, f.header...)
			f.write(tw, ims)
		}
		fams = fams[1:]
	}
	tw.flush()
}

// textBufSize is how much text is gathered before it is written out.
const textBufSize = 8 << 10

// textWriter gathers lines in buf and writes them out when it is full; the first write error
// stops the writing (the client went away).
type textWriter struct {
	out io.Writer
	buf []byte
	err error
}

func (tw *textWriter) flush() {
	if tw.err == nil && len(tw.buf) > 0 {
		_, tw.err = tw.out.Write(tw.buf)
	}
	tw.buf = tw.buf[:0]
}

// line writes `name{labels} value`; labels is the label pairs, escaped, without braces.
func (tw *textWriter) line(name, suffix string, labels []string, value float64) {
	b := append(tw.buf, name...)
	b = append(b, suffix...)
	if len(labels) > 0 {
		b = append(b, '{')
		for i, l := range labels {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, l...)
		}
		b = append(b, '}')
	}
	b = append(b, ' ')
	b = appendFloat(b, value)
	b = append(b, '\n')
	tw.buf = b
	if len(tw.buf) >= textBufSize-512 {
		tw.flush()
	}
}

// appendFloat writes v as the text format does (expfmt's writeFloat).
func appendFloat(b []byte, v float64) []byte {
	switch {
	case v == 1:
		return append(b, '1')
	case v == 0:
		return append(b, '0')
	case v == -1:
		return append(b, "-1"...)
	case math.IsNaN(v):
		return append(b, "NaN"...)
	case math.IsInf(v, +1):
		return append(b, "+Inf"...)
	case math.IsInf(v, -1):
		return append(b, "-Inf"...)
	}
	return strconv.AppendFloat(b, v, 'g', -1, 64)
}

// labelText is name="value" with the value escaped as the text format wants it.
func labelText(name, value string) string {
	var b strings.Builder
	b.WriteString(name)
	b.WriteString(`="`)
	for _, r := range value {
		switch r {
		case '\\':
			b.WriteString(`\\`)
		case '"':
			b.WriteString(`\"`)
		case '\n':
			b.WriteString(`\n`)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// instanceText is an instance's label pairs as text, made once.
type instanceText struct {
	instance, iface, vrid string // instance="..", interface="..", vrid=".."
	iname, intf           string // keepalived's: iname="..", intf=".."
}

func newInstanceText(name, iface, vrid string) instanceText {
	return instanceText{
		instance: labelText("instance", name), iface: labelText("interface", iface), vrid: labelText("vrid", vrid),
		iname: labelText("iname", name), intf: labelText("intf", iface),
	}
}

// instanceFamily is one per-instance family of the text exposition.
type instanceFamily struct {
	name   string
	header string // # HELP and # TYPE lines
	compat bool   // keepalived's: only with keepalived_compat
	write  func(tw *textWriter, ims []*InstanceMetrics)
}

// instanceFamilies are every per-instance family, sorted by name.
var instanceFamilies = func() []instanceFamily {
	var fs []instanceFamily
	add := func(d *prometheus.Desc, typ dto.MetricType, compat bool, write func(tw *textWriter, name string, ims []*InstanceMetrics)) {
		name, help := descNameHelp(d)
		var b strings.Builder
		b.WriteString("# HELP " + name + " ")
		b.WriteString(strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(help))
		b.WriteString("\n# TYPE " + name + " " + strings.ToLower(typ.String()) + "\n")
		fs = append(fs, instanceFamily{name: name, header: b.String(), compat: compat,
			write: func(tw *textWriter, ims []*InstanceMetrics) { write(tw, name, ims) }})
	}
	counter := func(d *prometheus.Desc, v func(c *instanceCounters) uint64) {
		add(d, dto.MetricType_COUNTER, false, func(tw *textWriter, name string, ims []*InstanceMetrics) {
			for _, im := range ims {
				tw.line(name, "", []string{im.text.instance}, float64(v(&im.counters)))
			}
		})
	}
	counter(descAdvertsSent, func(c *instanceCounters) uint64 { sent, _ := c.sent(); return sent })
	counter(descAdvertsReceived, func(c *instanceCounters) uint64 { return c.received() })
	counter(descPrioZeroSent, func(c *instanceCounters) uint64 { return c.prioZeroSent.Load() })
	counter(descPrioZeroReceived, func(c *instanceCounters) uint64 { return c.prioZeroReceived.Load() })
	counter(descGARPSent, func(c *instanceCounters) uint64 { return c.garpSent.Load() })
	counter(descAddrMismatch, func(c *instanceCounters) uint64 { return c.addrMismatch.Load() })
	counter(descAdvertSendErrors, func(c *instanceCounters) uint64 { _, errs := c.sent(); return errs })
	add(descTransitions, dto.MetricType_COUNTER, false, writeTransitions)
	add(descDropped, dto.MetricType_COUNTER, false, func(tw *textWriter, name string, ims []*InstanceMetrics) {
		writeByLabel(tw, name, ims, descDropped, "reason", reasonStrings[:], reasonText[:], func(c *instanceCounters, i int) uint64 { return c.dropped[i].Load() })
	})
	add(descVIPErrors, dto.MetricType_COUNTER, false, func(tw *textWriter, name string, ims []*InstanceMetrics) {
		writeByLabel(tw, name, ims, descVIPErrors, "op", vipOpNames[:], opText[:], func(c *instanceCounters, i int) uint64 { return c.vipErrors[i].Load() })
	})
	add(descState, dto.MetricType_GAUGE, false, func(tw *textWriter, name string, ims []*InstanceMetrics) {
		for _, im := range ims {
			tw.line(name, "", []string{im.text.instance, im.text.iface, im.text.vrid}, float64(im.state.Load()))
		}
	})
	add(descPriority, dto.MetricType_GAUGE, false, func(tw *textWriter, name string, ims []*InstanceMetrics) {
		for _, im := range ims {
			tw.line(name, "", []string{im.text.instance}, float64(im.priority.Load()))
		}
	})
	add(descLastTakeover, dto.MetricType_GAUGE, false, func(tw *textWriter, name string, ims []*InstanceMetrics) {
		for _, im := range ims {
			tw.line(name, "", []string{im.text.instance}, math.Float64frombits(im.lastTakeover.Load()))
		}
	})
	histo := func(d *prometheus.Desc, h func(im *InstanceMetrics) *histogram) {
		add(d, dto.MetricType_HISTOGRAM, false, func(tw *textWriter, name string, ims []*InstanceMetrics) {
			for _, im := range ims {
				writeHistogram(tw, name, im.text.instance, h(im).snapshot())
			}
		})
	}
	histo(descTakeover, func(im *InstanceMetrics) *histogram { return &im.takeover })
	histo(descRelease, func(im *InstanceMetrics) *histogram { return &im.release })

	compatCounter := func(d *prometheus.Desc, v func(c *instanceCounters) uint64) {
		add(d, dto.MetricType_COUNTER, true, func(tw *textWriter, name string, ims []*InstanceMetrics) {
			for _, im := range ims {
				tw.line(name, "", []string{im.text.iname, im.text.intf, im.text.vrid}, float64(v(&im.counters)))
			}
		})
	}
	compatCounter(descCompatAdvertsReceived, func(c *instanceCounters) uint64 { return c.received() })
	compatCounter(descCompatAdvertsSent, func(c *instanceCounters) uint64 { sent, _ := c.sent(); return sent })
	compatCounter(descCompatPrioZeroSent, func(c *instanceCounters) uint64 { return c.prioZeroSent.Load() })
	compatCounter(descCompatPrioZeroReceived, func(c *instanceCounters) uint64 { return c.prioZeroReceived.Load() })
	compatCounter(descCompatBecomeMaster, (*instanceCounters).becomeMaster)
	compatCounter(descCompatReleaseMaster, (*instanceCounters).releaseMaster)
	for d, r := range compatDrops {
		i := dropIndex(r)
		compatCounter(d, func(c *instanceCounters) uint64 { return c.dropped[i].Load() })
	}
	add(descCompatState, dto.MetricType_GAUGE, true, func(tw *textWriter, name string, ims []*InstanceMetrics) {
		for _, im := range ims {
			st := float64(im.state.Load())
			for _, a := range im.vipAddrTexts() {
				tw.line(name, "", []string{im.text.iname, im.text.intf, a, im.text.vrid}, st)
			}
		}
	})
	slices.SortFunc(fs, func(a, b instanceFamily) int { return cmp.Compare(a.name, b.name) })
	return fs
}()

// descNameHelp reads a Desc's name and help (client_golang does not export them).
func descNameHelp(d *prometheus.Desc) (name, help string) {
	s := d.String() // Desc{fqName: "x", help: "y", constLabels: {}, variableLabels: {...}}
	name = quotedAfter(s, "fqName: ")
	help = quotedAfter(s, "help: ")
	return name, help
}

func quotedAfter(s, key string) string {
	i := strings.Index(s, key)
	if i < 0 {
		panic("metrics: cannot read " + key + " of " + s)
	}
	v, err := strconv.QuotedPrefix(s[i+len(key):])
	if err != nil {
		panic("metrics: cannot read " + key + " of " + s)
	}
	u, err := strconv.Unquote(v)
	if err != nil {
		panic("metrics: cannot read " + key + " of " + s)
	}
	return u
}

// writeTransitions writes hapair_vrrp_transitions_total in the registry's order: by from, then
// instance, then to.
func writeTransitions(tw *textWriter, name string, ims []*InstanceMetrics) {
	for _, f := range statesByName {
		for _, im := range ims {
			for _, t := range statesByName {
				if f != t {
					tw.line(name, "", []string{fromText[f], im.text.instance, toText[t]}, float64(im.counters.transitions[f][t].Load()))
				}
			}
		}
	}
	// Transitions outside the fixed states (none are known): after the others.
	for _, im := range ims {
		for _, o := range im.counters.others(descTransitions) {
			tw.line(name, "", []string{labelText("from", o.a), im.text.instance, labelText("to", o.b)}, float64(o.v))
		}
	}
}

// writeByLabel writes a family labelled instance and one more label, whose fixed values are
// values (label texts texts, counted by v), merged with the instance's values outside the set,
// in the order of the second label's values, as the registry sorts them.
func writeByLabel(tw *textWriter, name string, ims []*InstanceMetrics, d *prometheus.Desc, label string, values, texts []string, v func(c *instanceCounters, i int) uint64) {
	order := sortedIndex(values)
	for _, im := range ims {
		others := im.counters.others(d)
		for _, i := range order {
			for len(others) > 0 && others[0].a < values[i] {
				tw.line(name, "", []string{im.text.instance, labelText(label, others[0].a)}, float64(others[0].v))
				others = others[1:]
			}
			tw.line(name, "", []string{im.text.instance, texts[i]}, float64(v(&im.counters, i)))
		}
		for _, o := range others {
			tw.line(name, "", []string{im.text.instance, labelText(label, o.a)}, float64(o.v))
		}
	}
}

// writeHistogram writes one histogram series: its cumulative buckets, +Inf, sum and count.
func writeHistogram(tw *textWriter, name, instance string, h histogramCounts) {
	var cum uint64
	for i := range failoverBuckets {
		cum += h.buckets[i]
		tw.line(name, "_bucket", []string{instance, leText[i]}, float64(cum))
	}
	tw.line(name, "_bucket", []string{instance, `le="+Inf"`}, float64(h.count))
	tw.line(name, "_sum", []string{instance}, h.sum)
	tw.line(name, "_count", []string{instance}, float64(h.count))
}

// sortedIndex is the indices of values in the order of the values.
func sortedIndex(values []string) []int {
	idx := make([]int, len(values))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return cmp.Compare(values[a], values[b]) })
	return idx
}

// The fixed label texts.
var (
	statesByName     = sortedIndex(stateNames[:])
	fromText, toText [len(stateNames)]string
	reasonStrings    [len(dropReasonNames)]string
	reasonText       [len(dropReasonNames)]string
	opText           [len(vipOpNames)]string
	leText           [len(failoverBucketsArray)]string
)

func init() {
	for i, s := range stateNames {
		fromText[i], toText[i] = labelText("from", s), labelText("to", s)
	}
	for i, r := range dropReasonNames {
		reasonStrings[i], reasonText[i] = string(r), labelText("reason", string(r))
	}
	for i, op := range vipOpNames {
		opText[i] = labelText("op", op)
	}
	for i, b := range failoverBuckets {
		leText[i] = labelText("le", string(appendFloat(nil, b)))
	}
}
