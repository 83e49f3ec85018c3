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
	"strconv"
	"strings"
	"sync"
	"time"
)

// pm2Env is the environment the pm2 command runs with: enough to find the
// daemon, and nothing read from .env, so that no configuration (secrets
// included) reaches PM2's process list.
func pm2Env() []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "PM2_HOME"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// PM2 runs `pm2 args...`.
func PM2(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, "pm2", args...)
	cmd.Env = pm2Env()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("loadtest: pm2 %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// PM2App is one process of `pm2 jlist`.
type PM2App struct {
	Name   string
	PID    int
	Status string
}

// PM2List returns PM2's processes.
func PM2List(ctx context.Context) ([]PM2App, error) {
	cmd := exec.CommandContext(ctx, "pm2", "jlist")
	cmd.Env = pm2Env()
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("loadtest: pm2 jlist: %w", err)
	}
	return parsePM2List(out)
}

func parsePM2List(out []byte) ([]PM2App, error) {
	// pm2 may print a banner before the JSON when its daemon starts.
	if i := bytes.IndexByte(out, '['); i > 0 {
		out = out[i:]
	}
	var raw []struct {
		Name  string `json:"name"`
		PID   int    `json:"pid"`
		PM2En struct {
			Status string `json:"status"`
		} `json:"pm2_env"`
	}
	if err := json.Unmarshal(out, &raw); err != nil {
		return nil, fmt.Errorf("loadtest: pm2 jlist: %w", err)
	}
	apps := make([]PM2App, len(raw))
	for i, a := range raw {
		apps[i] = PM2App{Name: a.Name, PID: a.PID, Status: a.PM2En.Status}
	}
	return apps, nil
}

// PM2PID returns the pid of the online PM2 app name (its first process).
func PM2PID(ctx context.Context, name string) (int, error) {
	apps, err := PM2List(ctx)
	if err != nil {
		return 0, err
	}
	for _, a := range apps {
		if a.Name == name && a.Status == "online" && a.PID > 0 {
			return a.PID, nil
		}
	}
	return 0, fmt.Errorf("loadtest: PM2 app %s is not online", name)
}

// Memory is a process's resident set, from /proc/<pid>/status.
type Memory struct {
	RSS  int64 // VmRSS, bytes
	Peak int64 // VmHWM, bytes: the highest RSS since start or ResetPeak
}

// ReadMemory reads pid's VmRSS and VmHWM.
func ReadMemory(pid int) (Memory, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return Memory{}, fmt.Errorf("loadtest: memory of pid %d: %w", pid, err)
	}
	return parseStatus(b)
}

func parseStatus(b []byte) (Memory, error) {
	var m Memory
	found := 0
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "VmRSS" && key != "VmHWM") {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return Memory{}, fmt.Errorf("loadtest: /proc status line %q", sc.Text())
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return Memory{}, fmt.Errorf("loadtest: /proc status line %q: %w", sc.Text(), err)
		}
		if key == "VmRSS" {
			m.RSS = kb << 10
		} else {
			m.Peak = kb << 10
		}
		found++
	}
	if found != 2 {
		return Memory{}, errors.New("loadtest: no VmRSS/VmHWM in /proc status")
	}
	return m, nil
}

// ResetPeak sets pid's VmHWM back to its current RSS (clear_refs 5, root
// only), so that the next peak is the next request's.
func ResetPeak(pid int) error {
	if err := os.WriteFile("/proc/"+strconv.Itoa(pid)+"/clear_refs", []byte("5"), 0); err != nil {
		return fmt.Errorf("loadtest: reset peak RSS of pid %d: %w", pid, err)
	}
	return nil
}

// PeakSampler records the highest RSS of some processes while it runs:
// VmHWM after ResetPeak where the kernel allows, and VmRSS sampled every
// few milliseconds as well, so a peak is seen either way.
type PeakSampler struct {
	pids []int
	stop chan struct{}
	done sync.WaitGroup

	mu   sync.Mutex
	peak map[int]int64
	err  error
}

// StartPeakSampler resets the peaks of pids and starts sampling.
func StartPeakSampler(pids ...int) *PeakSampler {
	s := &PeakSampler{pids: pids, stop: make(chan struct{}), peak: map[int]int64{}}
	for _, pid := range pids {
		_ = ResetPeak(pid) // without it, the sampled VmRSS still counts
	}
	s.done.Add(1)
	go func() {
		defer s.done.Done()
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			s.sample(false)
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *PeakSampler) sample(final bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, pid := range s.pids {
		m, err := ReadMemory(pid)
		if err != nil {
			if s.err == nil {
				s.err = err
			}
			continue
		}
		v := m.RSS
		if final {
			v = max(v, m.Peak)
		}
		s.peak[pid] = max(s.peak[pid], v)
	}
}

// Stop ends the sampling and returns each process's peak RSS in bytes.
// VmHWM joins only at the end: right after ResetPeak it already holds the
// RSS of that moment, and it only grows.
func (s *PeakSampler) Stop() (map[int]int64, error) {
	close(s.stop)
	s.done.Wait()
	s.sample(true)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak, s.err
}
