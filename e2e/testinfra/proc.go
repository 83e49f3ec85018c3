package testinfra

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Proc is one child process, a server or a service binary, that a test can
// signal, kill and start again with the same command line. Its output is
// appended to one log file across restarts.
type Proc struct {
	Name    string
	LogPath string
	path    string
	args    []string
	env     []string
	attr    func() *syscall.SysProcAttr

	mu    sync.Mutex
	cmd   *exec.Cmd
	done  chan struct{}
	state *os.ProcessState
}

// newProc describes a process; Start runs it. Cleanup kills it if it still
// runs and, when the test failed, shows the end of its log.
func newProc(tb testing.TB, name, logPath string, attr func() *syscall.SysProcAttr, env []string, path string, args ...string) *Proc {
	tb.Helper()
	p := &Proc{Name: name, LogPath: logPath, path: path, args: args, env: env, attr: attr}
	tb.Cleanup(func() {
		p.kill()
		if tb.Failed() {
			tb.Logf("--- last lines of %s (%s) ---\n%s", name, logPath, p.LogTail(40))
		}
	})
	return p
}

// Start runs the process (again). It fails the test if it already runs.
func (p *Proc) Start(tb testing.TB) {
	tb.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done != nil {
		select {
		case <-p.done:
		default:
			tb.Fatalf("%s: start: already running (pid %d)", p.Name, p.cmd.Process.Pid)
		}
	}
	logf, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		tb.Fatalf("%s: log: %v", p.Name, err)
	}
	fmt.Fprintf(logf, "\n=== %s: start %s ===\n", time.Now().Format(time.RFC3339Nano), p.Name)
	cmd := exec.Command(p.path, p.args...)
	cmd.Env = p.env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = p.attr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		tb.Fatalf("%s: start %s: %v", p.Name, p.path, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.state = cmd, done, nil
	go func() {
		_ = cmd.Wait()
		logf.Close()
		p.mu.Lock()
		p.state = cmd.ProcessState
		p.mu.Unlock()
		close(done)
	}()
}

// Pid is the process id of the current run.
func (p *Proc) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd.Process.Pid
}

// Running reports whether the current run has not exited.
func (p *Proc) Running() bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return false
	}
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// Done is closed when the current run exits.
func (p *Proc) Done() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// Signal sends sig to the current run.
func (p *Proc) Signal(tb testing.TB, sig os.Signal) {
	tb.Helper()
	p.mu.Lock()
	cmd := p.cmd
	p.mu.Unlock()
	if err := cmd.Process.Signal(sig); err != nil {
		tb.Fatalf("%s: signal %v: %v", p.Name, sig, err)
	}
}

// Wait waits up to timeout for the current run to exit and returns its
// exit code (-1 when killed by a signal). It fails the test, after killing
// the process, if it does not exit in time.
func (p *Proc) Wait(tb testing.TB, timeout time.Duration) int {
	tb.Helper()
	done := p.Done()
	select {
	case <-done:
	case <-time.After(timeout):
		p.kill()
		tb.Fatalf("%s did not exit within %s; killed", p.Name, timeout)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state.ExitCode()
}

// Stop sends sig and waits for the exit; it returns the exit code and how
// long the process took to exit.
func (p *Proc) Stop(tb testing.TB, sig os.Signal, timeout time.Duration) (int, time.Duration) {
	tb.Helper()
	start := time.Now()
	p.Signal(tb, sig)
	code := p.Wait(tb, timeout)
	return code, time.Since(start)
}

// Kill sends SIGKILL and waits for the exit.
func (p *Proc) Kill(tb testing.TB) {
	tb.Helper()
	p.Signal(tb, syscall.SIGKILL)
	p.Wait(tb, 30*time.Second)
}

func (p *Proc) kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if done == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Kill()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
	}
}

// Log returns the whole log of every run so far.
func (p *Proc) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// LogTail returns the last n lines of the log.
func (p *Proc) LogTail(n int) string {
	b, _ := os.ReadFile(p.LogPath)
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// CountLog counts log lines (all runs) that contain every one of substrs.
func (p *Proc) CountLog(substrs ...string) int {
	n := 0
	for line := range strings.SplitSeq(p.Log(), "\n") {
		ok := true
		for _, s := range substrs {
			if !strings.Contains(line, s) {
				ok = false
				break
			}
		}
		if ok {
			n++
		}
	}
	return n
}

// CPUTime is the CPU time (user + system) the current run has used so far,
// read from /proc (Linux): a busy retry loop shows up here.
func (p *Proc) CPUTime(tb testing.TB) time.Duration {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Pid()))
	if err != nil {
		tb.Fatalf("%s: cpu time: %v", p.Name, err)
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces: state is field 3, utime 14 and stime 15 (in clock ticks).
	rest := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(rest) < 13 {
		tb.Fatalf("%s: cpu time: short /proc stat %q", p.Name, b)
	}
	utime, _ := strconv.ParseInt(rest[11], 10, 64)
	stime, _ := strconv.ParseInt(rest[12], 10, 64)
	const ticksPerSecond = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticksPerSecond
}

// RSS is the resident memory of the current run in bytes (VmRSS in
// /proc/<pid>/status, Linux).
func (p *Proc) RSS(tb testing.TB) int64 {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Pid()))
	if err != nil {
		tb.Fatalf("%s: rss: %v", p.Name, err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			// "VmRSS:	   12345 kB"
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				if kb, err := strconv.ParseInt(f[0], 10, 64); err == nil {
					return kb << 10
				}
			}
		}
	}
	tb.Fatalf("%s: rss: no VmRSS line in /proc status:\n%s", p.Name, b)
	return 0
}
