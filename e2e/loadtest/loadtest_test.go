package loadtest

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestParseWrk(t *testing.T) {
	t.Parallel()
	out := []byte("Running 1s test @ http://127.0.0.1:1\n  2 threads and 4 connections\n" +
		`LOADTEST {"requests":5000,"duration_us":2000000,"p50_us":1200,"p99_us":9800,"status_errors":3,"socket_errors":1}` + "\n")
	r, err := ParseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.RPS() != 2500 || r.P50() != 1200*time.Microsecond || r.P99() != 9800*time.Microsecond || r.StatusErrors != 3 || r.SocketErrors != 1 {
		t.Errorf("got %+v (rps %v)", r, r.RPS())
	}
	for name, bad := range map[string]string{
		"no result line": "Running 1s test\n",
		"bad json":       "LOADTEST {\"requests\":\n",
		"no request":     `LOADTEST {"requests":0,"duration_us":1000000}` + "\n",
	} {
		if _, err := ParseWrk([]byte(bad)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestWrkResultAdd(t *testing.T) {
	t.Parallel()
	a := WrkResult{Requests: 100, DurationUS: 1e6, P50US: 10, P99US: 90, StatusErrors: 1}
	a.Add(WrkResult{Requests: 300, DurationUS: 1e6, P50US: 20, P99US: 50, SocketErrors: 2})
	want := WrkResult{Requests: 400, DurationUS: 2e6, P50US: 20, P99US: 90, StatusErrors: 1, SocketErrors: 2}
	if a != want || a.RPS() != 200 {
		t.Errorf("got %+v, want %+v", a, want)
	}
}

func TestScriptsEndInTheDoneHook(t *testing.T) {
	t.Parallel()
	for name, s := range map[string]string{
		"get by id": GetByIDScript([]int64{7, 8}),
		"fixed":     FixedGetScript("/api/movies?title=x"),
		"post":      PostOrderScript("loadtest-x-b", "loadtest-x"),
	} {
		if !strings.Contains(s, "request = function") {
			t.Errorf("%s: no request function:\n%s", name, s)
		}
	}
	if s := GetByIDScript([]int64{7, 8}); !strings.Contains(s, "local ids = {7,8}") {
		t.Errorf("ids not in the script:\n%s", s)
	}
	// The key must differ per request: a counter and the thread's number.
	if s := PostOrderScript("u", "p"); !strings.Contains(s, `prefix .. "-" .. thread_id .. "-" .. n`) {
		t.Errorf("the key is not per request:\n%s", s)
	}
}

func TestPercentile(t *testing.T) {
	t.Parallel()
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	for p, want := range map[float64]time.Duration{50: 50 * time.Millisecond, 99: 99 * time.Millisecond, 100: 100 * time.Millisecond} {
		if got := Percentile(ds, p); got != want {
			t.Errorf("p%v = %v, want %v", p, got, want)
		}
	}
	if Percentile(nil, 99) != 0 {
		t.Error("no samples: want 0")
	}
	if got := Median([]time.Duration{3, 1, 2}); got != 2 {
		t.Errorf("median = %v, want 2", got)
	}
}

func TestFormats(t *testing.T) {
	t.Parallel()
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -4500: "-4,500"} {
		if got := Thousands(n); got != want {
			t.Errorf("Thousands(%d) = %q, want %q", n, got, want)
		}
	}
	if got := Ratio(9, 10); got != "0.90x" {
		t.Errorf("Ratio = %q", got)
	}
	if got := Ratio(1, 0); got != "-" {
		t.Errorf("Ratio by zero = %q", got)
	}
	if got := PerSecond(4766.6); got != "4,767/s" {
		t.Errorf("PerSecond = %q", got)
	}
	if got := MiB(64 << 20); got != "64.0 MiB" {
		t.Errorf("MiB = %q", got)
	}
}

func TestRender(t *testing.T) {
	t.Parallel()
	rows := []Row{
		{Name: "a. x", Project: "1/s", Reference: "2/s", Ratio: "0.50x", Target: ">= 0.9x", Verdict: Fail},
		ErrorRow("d. y", "< 2 s", bytesErr("boom")),
	}
	var b bytes.Buffer
	if err := Render(&b, rows); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"row", "reference (same run)", "a. x", "0.50x", "FAIL", "ERROR", "notes:", "d. y: boom"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if !Failed(rows) || Failed(rows[:0]) || Failed([]Row{{Verdict: Pass}}) {
		t.Error("Failed is wrong")
	}
}

type bytesErr string

func (e bytesErr) Error() string { return string(e) }

// TestObjectCounter: openings split across writes count once; an escaped
// opening inside a string does not count.
func TestObjectCounter(t *testing.T) {
	t.Parallel()
	body := `[{"id":1,"title":"a {\"id\": b","description":""},{"id":2,"title":"c","description":""}]`
	for size := 1; size <= len(body); size++ {
		var c objectCounter
		for i := 0; i < len(body); i += size {
			_, _ = c.Write([]byte(body[i:min(i+size, len(body))]))
		}
		if c.n != 2 || c.bytes != int64(len(body)) {
			t.Fatalf("writes of %d bytes: %d movies, %d bytes; want 2, %d", size, c.n, c.bytes, len(body))
		}
	}
}

func TestMovieEncoderMatchesTheCounter(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	enc := newMovieEncoder(&b)
	for i := range int64(3) {
		if err := enc.movie(i+1, `t "q"`, "d"); err != nil {
			t.Fatal(err)
		}
	}
	if err := enc.close(); err != nil {
		t.Fatal(err)
	}
	var c objectCounter
	_, _ = c.Write(b.Bytes())
	if c.n != 3 || !strings.HasPrefix(b.String(), `[{"id":1,"title":"t \"q\"","description":"d"}`) || !strings.HasSuffix(b.String(), "]") {
		t.Errorf("%d movies in %s", c.n, b.String())
	}
	var empty bytes.Buffer
	e := newMovieEncoder(&empty)
	if err := e.close(); err != nil || empty.String() != "[]" {
		t.Errorf("empty list %q, %v", empty.String(), err)
	}
}

func TestParseStatus(t *testing.T) {
	t.Parallel()
	m, err := parseStatus([]byte("Name:\tinventory\nVmHWM:\t  577536 kB\nVmRSS:\t   40960 kB\n"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Peak != 577536<<10 || m.RSS != 40960<<10 {
		t.Errorf("got %+v", m)
	}
	if _, err := parseStatus([]byte("Name:\tx\n")); err == nil {
		t.Error("no VmRSS: no error")
	}
}

func TestParsePM2List(t *testing.T) {
	t.Parallel()
	apps, err := parsePM2List([]byte(`banner
[{"name":"gateway_app","pid":42,"pm2_env":{"status":"online"}},{"name":"billing_app","pid":0,"pm2_env":{"status":"stopped"}}]`))
	if err != nil {
		t.Fatal(err)
	}
	want := []PM2App{{"gateway_app", 42, "online"}, {"billing_app", 0, "stopped"}}
	if len(apps) != 2 || apps[0] != want[0] || apps[1] != want[1] {
		t.Errorf("got %+v", apps)
	}
}

func TestCheckRunID(t *testing.T) {
	t.Parallel()
	for id, ok := range map[string]bool{"a1b2c3": true, "": false, "UPPER": false, "a-b": false, "x'y": false, "12345678901234567": false} {
		if err := CheckRunID(id); (err == nil) != ok {
			t.Errorf("CheckRunID(%q) = %v", id, err)
		}
	}
	if u := OrderUserID("0123456789abcdef", "c"); len(u) > 64 {
		t.Errorf("user id %q longer than billing allows", u)
	}
}

func TestCountUntil(t *testing.T) {
	t.Parallel()
	seq := []int64{0, 0, 4, 7, 10}
	i := 0
	d, err := CountUntil(context.Background(), 10, time.Millisecond, 5*time.Second, func(context.Context) (int64, error) {
		v := seq[min(i, len(seq)-1)]
		i++
		return v, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if d.N != 10 || d.First != 4 || d.Elapsed <= 0 || d.Total < d.Elapsed || d.Rate() <= 0 {
		t.Errorf("got %+v", d)
	}
	_, err = CountUntil(context.Background(), 10, time.Millisecond, 20*time.Millisecond, func(context.Context) (int64, error) { return 3, nil })
	if err == nil || !strings.Contains(err.Error(), "3 of 10 rows") {
		t.Errorf("no progress: err = %v", err)
	}
}
