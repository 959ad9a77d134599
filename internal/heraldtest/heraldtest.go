// Package heraldtest builds the herald binary and runs it as a separate OS
// process in tests, reading the address it reports when ready.
package heraldtest

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	buildBin  string
	buildErr  error
)

// Build compiles ./cmd/herald once per test binary and returns its path.
func Build(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		dir, err := os.MkdirTemp("", "herald-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildBin = filepath.Join(dir, "herald")
		cmd := exec.Command("go", "build", "-o", buildBin, "./cmd/herald")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildBin
}

// Proc is a running herald process.
type Proc struct {
	// GRPCAddr is the address from the process's ready line.
	GRPCAddr string
	cmd      *exec.Cmd
	done     chan error
	exited   chan struct{}
	exitErr  error
	mu       sync.Mutex
	out      []string
}

var ready = regexp.MustCompile(`herald (dev|serve) ready"? grpc=(\S+)`)

// Start runs bin with args and extra environment (on top of PATH and HOME)
// and waits up to a minute for its ready line. The process is killed when
// the test ends; its output is logged if the test failed.
func Start(t *testing.T, bin string, args []string, env ...string) *Proc {
	t.Helper()
	p, err := Launch(t, bin, args, env...)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Launch is [Start] returning an error, instead of failing the test, when
// the process exits or is not ready within a minute; the process is then
// killed.
func Launch(t *testing.T, bin string, args []string, env ...string) (*Proc, error) {
	t.Helper()
	p := &Proc{cmd: exec.Command(bin, args...), done: make(chan error, 1), exited: make(chan struct{})}
	p.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	addr := make(chan string, 1)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			p.mu.Lock()
			p.out = append(p.out, sc.Text())
			p.mu.Unlock()
			if m := ready.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[2]
			}
		}
	}()
	go func() {
		<-scanned
		err := p.cmd.Wait()
		p.exitErr = err
		close(p.exited)
		p.done <- err
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		if t.Failed() {
			t.Logf("herald %s output:\n%s", strings.Join(args, " "), p.Output())
		}
	})
	select {
	case p.GRPCAddr = <-addr:
		return p, nil
	case err := <-p.done:
		p.done <- err
		return nil, fmt.Errorf("herald %v exited before it was ready: %v\n%s", args, err, p.Output())
	case <-time.After(60 * time.Second):
		_ = p.cmd.Process.Kill()
		return nil, fmt.Errorf("herald %v was not ready within 60s\n%s", args, p.Output())
	}
}

// Exited is closed when the process has ended, whatever ended it.
func (p *Proc) Exited() <-chan struct{} { return p.exited }

// ExitErr is how the process ended; valid once Exited is closed.
func (p *Proc) ExitErr() error {
	<-p.exited
	return p.exitErr
}

// Kill sends SIGKILL, as a crash would, and waits for the process to end.
func (p *Proc) Kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("herald did not exit within 30s of SIGKILL")
	}
}

// Output returns what the process wrote to stderr so far.
func (p *Proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.out, "\n")
}

// Stop sends SIGTERM and returns the exit error, failing the test if the
// process has not exited within timeout.
func (p *Proc) Stop(t *testing.T, timeout time.Duration) error {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		return err
	case <-time.After(timeout):
		t.Fatalf("herald did not exit within %s of SIGTERM", timeout)
		return nil
	}
}
