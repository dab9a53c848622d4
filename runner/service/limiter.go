package service

import (
	"context"
	"errors"
	"sync"
)

var (
	// errQueueFull is a task refused because every slot is busy and the
	// queue behind them is full.
	errQueueFull = errors.New("the service is busy: every slot is running a task and the queue is full")
	// errShuttingDown is a task refused because the service is stopping.
	errShuttingDown = errors.New("the service is shutting down")
)

// limiter lets at most slots tasks run at once and at most queue more
// wait for a slot, first come first served; the rest are refused at
// once, so the backlog is never unbounded.
type limiter struct {
	// tokens holds one value per running task; a send blocks while all
	// slots are taken. Blocked senders are woken in FIFO order.
	tokens chan struct{}
	queue  int

	mu       sync.Mutex
	waiting  int
	closed   bool
	shutdown chan struct{}

	// changed, when set, hears the new counts after each change.
	changed func(running, waiting int)
}

func newLimiter(slots, queue int, changed func(running, waiting int)) *limiter {
	if changed == nil {
		changed = func(int, int) {}
	}
	return &limiter{tokens: make(chan struct{}, slots), queue: queue, shutdown: make(chan struct{}), changed: changed}
}

// acquire waits for a slot and returns the function that gives it back.
// It fails at once with errQueueFull when the queue is full, with
// errShuttingDown once close was called, and with ctx's error when the
// caller gives up while waiting.
func (l *limiter) acquire(ctx context.Context) (release func(), err error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, errShuttingDown
	}
	// A free slot is taken at once; the buffer stays full while anyone
	// waits, so this never jumps the queue.
	select {
	case l.tokens <- struct{}{}:
		l.notifyLocked()
		l.mu.Unlock()
		return l.releaser(), nil
	default:
	}
	if l.waiting >= l.queue {
		l.mu.Unlock()
		return nil, errQueueFull
	}
	l.waiting++
	l.notifyLocked()
	l.mu.Unlock()

	defer func() {
		l.mu.Lock()
		l.waiting--
		l.notifyLocked()
		l.mu.Unlock()
	}()
	select {
	case l.tokens <- struct{}{}:
		release := l.releaser()
		// A slot and the shutdown may come at once; the shutdown wins,
		// so no queued task starts after it.
		select {
		case <-l.shutdown:
			release()
			return nil, errShuttingDown
		default:
		}
		return release, nil
	case <-l.shutdown:
		return nil, errShuttingDown
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (l *limiter) releaser() func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			<-l.tokens
			l.notifyLocked()
			l.mu.Unlock()
		})
	}
}

// notifyLocked reports the counts; l.mu is held, so reports are in order.
func (l *limiter) notifyLocked() { l.changed(len(l.tokens), l.waiting) }

// close refuses every task from now on, those waiting included; running
// tasks keep their slots.
func (l *limiter) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.closed = true
		close(l.shutdown)
	}
}

// counts returns the running and waiting tasks.
func (l *limiter) counts() (running, waiting int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.tokens), l.waiting
}
