package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// WrkResult is what one wrk run measured, as its Lua done() hook reports it
// (see doneHook): wrk's own summary, not figures recomputed here.
type WrkResult struct {
	Requests     int64 `json:"requests"`
	DurationUS   int64 `json:"duration_us"`
	P50US        int64 `json:"p50_us"`
	P99US        int64 `json:"p99_us"`
	StatusErrors int64 `json:"status_errors"` // responses outside 2xx/3xx
	SocketErrors int64 `json:"socket_errors"` // connect, read, write, timeout
}

// Add sums other's run into r: requests, time and errors add up, and each
// percentile is the worse of the two (wrk reports no histogram to merge).
func (r *WrkResult) Add(other WrkResult) {
	r.Requests += other.Requests
	r.DurationUS += other.DurationUS
	r.StatusErrors += other.StatusErrors
	r.SocketErrors += other.SocketErrors
	r.P50US = max(r.P50US, other.P50US)
	r.P99US = max(r.P99US, other.P99US)
}

// RPS is the requests per second over the run.
func (r WrkResult) RPS() float64 {
	if r.DurationUS <= 0 {
		return 0
	}
	return float64(r.Requests) / (float64(r.DurationUS) / 1e6)
}

// P50 and P99 are the latency percentiles.
func (r WrkResult) P50() time.Duration { return time.Duration(r.P50US) * time.Microsecond }
func (r WrkResult) P99() time.Duration { return time.Duration(r.P99US) * time.Microsecond }

// resultPrefix starts the line doneHook prints.
const resultPrefix = "LOADTEST "

// doneHook is the Lua done() function every script ends with: it prints
// wrk's summary as one JSON line, so the figures come from wrk's own
// histogram instead of a parse of its human-readable report (which rounds
// and changes units).
const doneHook = `
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('` + resultPrefix + `{"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"status_errors":%d,"socket_errors":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), e.status,
    e.connect + e.read + e.write + e.timeout))
end
`

// ParseWrk finds the result line in wrk's output.
func ParseWrk(out []byte) (WrkResult, error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, resultPrefix); ok {
			var r WrkResult
			if err := json.Unmarshal([]byte(rest), &r); err != nil {
				return WrkResult{}, fmt.Errorf("loadtest: wrk result %q: %w", rest, err)
			}
			if r.Requests == 0 {
				return r, errors.New("loadtest: wrk completed no request")
			}
			return r, nil
		}
	}
	return WrkResult{}, fmt.Errorf("loadtest: no %q line in wrk's output:\n%s", strings.TrimSpace(resultPrefix), out)
}

// Wrk is one wrk invocation.
type Wrk struct {
	URL         string // scheme, host and port (the script builds the path)
	Connections int
	Threads     int
	Duration    time.Duration
	Script      string // Lua, without the done hook
	// Dir holds the script file; the run's temporary directory.
	Dir string
}

// Run runs wrk and returns its figures. wrk's own timeout is 2 s per
// request by default, far above every target.
func (w Wrk) Run(ctx context.Context) (WrkResult, error) {
	f, err := os.CreateTemp(w.Dir, "wrk-*.lua")
	if err != nil {
		return WrkResult{}, fmt.Errorf("loadtest: wrk script: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.WriteString(w.Script + doneHook); err != nil {
		_ = f.Close()
		return WrkResult{}, fmt.Errorf("loadtest: wrk script: %w", err)
	}
	if err := f.Close(); err != nil {
		return WrkResult{}, fmt.Errorf("loadtest: wrk script: %w", err)
	}
	threads := max(w.Threads, 1)
	args := []string{
		"-t", strconv.Itoa(threads), "-c", strconv.Itoa(max(w.Connections, threads)),
		"-d", fmt.Sprintf("%ds", max(int(w.Duration.Seconds()), 1)),
		"-s", filepath.Clean(f.Name()), w.URL,
	}
	// A bound above wrk's own duration, in case it hangs.
	rctx, cancel := context.WithTimeout(ctx, w.Duration+30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(rctx, "wrk", args...).CombinedOutput()
	if err != nil {
		return WrkResult{}, fmt.Errorf("loadtest: wrk %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return ParseWrk(out)
}

// luaString quotes s for a Lua source file.
func luaString(s string) string { return strconv.Quote(s) }

// GetByIDScript requests GET /api/movies/<id> with ids picked at random.
func GetByIDScript(ids []int64) string {
	var b strings.Builder
	b.WriteString("local ids = {")
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(id, 10))
	}
	b.WriteString("}\n")
	b.WriteString(`math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/api/movies/" .. ids[math.random(#ids)])
end
`)
	return b.String()
}

// FixedGetScript requests one path again and again. The request is built
// in init: wrk sets the Host header after loading the script.
func FixedGetScript(path string) string {
	return fmt.Sprintf(`local req
init = function(args) req = wrk.format("GET", %s) end
request = function() return req end
`, luaString(path))
}

// PostOrderScript posts one order for userID to /api/billing, each request
// with its own Idempotency-Key: prefix, the thread's number and a counter,
// so no two requests of this or any other run share a key.
func PostOrderScript(userID, prefix string) string {
	body := fmt.Sprintf(`{"user_id":%q,"number_of_items":"2","total_amount":"19.90"}`, userID)
	return fmt.Sprintf(`local body = %s
local prefix = %s
local n = 0
-- setup runs in wrk's main Lua state and sets the global thread_id in
-- each thread's own state.
local counter = 1
setup = function(thread)
  thread:set("thread_id", counter)
  counter = counter + 1
end
request = function()
  n = n + 1
  local headers = {}
  headers["Content-Type"] = "application/json"
  headers["Idempotency-Key"] = prefix .. "-" .. thread_id .. "-" .. n
  return wrk.format("POST", "/api/billing", headers, body)
end
`, luaString(body), luaString(prefix))
}
