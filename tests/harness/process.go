package harness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// stopGrace is how long Stop waits after SIGTERM before it sends SIGKILL.
const stopGrace = 10 * time.Second

// ProcessOptions describe a long-running child process.
type ProcessOptions struct {
	Name    string   // short name used in errors
	Bin     string   // path of the binary
	Args    []string // arguments, without the binary
	Env     []string // extra KEY=VALUE entries appended to our environment
	LogPath string   // stdout and stderr are appended here
	// NetNSPath, when set, runs the binary inside that network namespace
	// through nsenter (for simulating several nodes on one host).
	NetNSPath string
}

// Process is a long-running child (etcd, kube-apiserver, ipamd) that dies
// with us: it is started with Pdeathsig=SIGKILL, so even a test binary killed
// by a timeout or SIGKILL leaves no daemon behind holding ports or sockets.
type Process struct {
	Name    string
	LogPath string
	Cmd     *exec.Cmd

	done    chan struct{} // closed once the process has been reaped
	waitErr error         // valid after done is closed
	stop    sync.Once
	stopErr error
}

// StartProcess starts bin with args, appending its output to logPath.
func StartProcess(name, bin string, args []string, logPath string) (*Process, error) {
	return StartProcessWith(ProcessOptions{Name: name, Bin: bin, Args: args, LogPath: logPath})
}

// StartProcessWith starts a process described by opts.
func StartProcessWith(opts ProcessOptions) (*Process, error) {
	if opts.Name == "" {
		opts.Name = filepath.Base(opts.Bin)
	}
	if err := os.MkdirAll(filepath.Dir(opts.LogPath), 0o755); err != nil {
		return nil, err
	}
	logFile, err := os.OpenFile(opts.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	bin, args := opts.Bin, opts.Args
	if opts.NetNSPath != "" {
		bin, args = "nsenter", append([]string{"--net=" + opts.NetNSPath, "--", opts.Bin}, opts.Args...)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), opts.Env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Setpgid keeps a terminal's Ctrl-C from reaching the child directly:
	// the parent decides the shutdown order (StopOnInterrupt, Stop).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}

	var startErr error
	onSpawnThread(func() { startErr = cmd.Start() })
	if startErr != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", opts.Name, startErr)
	}
	p := &Process{Name: opts.Name, LogPath: opts.LogPath, Cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// Done is closed when the process has exited, whatever the reason.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has ended and, if so, how.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.waitErr
	default:
		return false, nil
	}
}

// Pid is the child's process id.
func (p *Process) Pid() int { return p.Cmd.Process.Pid }

// Stop sends SIGTERM, waits up to 10 s, then SIGKILLs. It returns nil when the
// process ended because of our SIGTERM, the exit error when it had already
// died on its own (so callers notice a crashed daemon), and an error when it
// had to be killed. Calling it again returns the same result.
func (p *Process) Stop() error {
	p.stop.Do(func() { p.stopErr = p.terminate() })
	return p.stopErr
}

func (p *Process) terminate() error {
	if exited, err := p.Exited(); exited {
		if err != nil {
			return fmt.Errorf("%s had already exited: %w", p.Name, err)
		}
		return nil
	}
	_ = p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if err := p.waitErr; err != nil && !terminatedBy(err, syscall.SIGTERM) {
			return fmt.Errorf("%s: %w", p.Name, err)
		}
		return nil
	case <-time.After(stopGrace):
	}
	_ = p.Cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("%s ignored SIGTERM for %v and was killed", p.Name, stopGrace)
}

func terminatedBy(err error, sig syscall.Signal) bool {
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) {
		return false
	}
	ws, ok := exitErr.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

// The kernel sends Pdeathsig when the *thread* that forked the child exits,
// not when the process does. The Go runtime retires threads, notably when a
// goroutine locked to one (as netns code does) returns without unlocking, and
// a child forked from such a thread would be killed out of the blue. So every
// Pdeathsig child is forked from one goroutine locked, for good, to its thread.
var (
	spawnOnce  sync.Once
	spawnQueue chan func()
)

func onSpawnThread(fn func()) {
	spawnOnce.Do(func() {
		spawnQueue = make(chan func())
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lives as long as we do
			for f := range spawnQueue {
				f()
			}
		}()
	})
	done := make(chan struct{})
	spawnQueue <- func() { defer close(done); fn() }
	<-done
}
