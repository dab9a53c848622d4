package service

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// eventually waits for cond, failing t after a few seconds.
func eventually(t *testing.T, cond func() bool, msg string) {
	t.Helper()
	require.Eventually(t, cond, 5*time.Second, 5*time.Millisecond, msg)
}

func TestLimiterQueuesThenRefuses(t *testing.T) {
	l := newLimiter(1, 1, nil)
	release1, err := l.acquire(context.Background())
	require.NoError(t, err)

	got := make(chan func(), 1)
	go func() {
		r, err := l.acquire(context.Background())
		assert.NoError(t, err)
		got <- r
	}()
	eventually(t, func() bool { _, w := l.counts(); return w == 1 }, "the second task should wait")

	_, err = l.acquire(context.Background())
	assert.ErrorIs(t, err, errQueueFull)

	release1()
	release1() // a second release is harmless
	release2 := <-got
	running, waiting := l.counts()
	assert.Equal(t, 1, running)
	assert.Equal(t, 0, waiting)
	release2()
	running, _ = l.counts()
	assert.Equal(t, 0, running)
}

func TestLimiterServesInOrder(t *testing.T) {
	l := newLimiter(1, 3, nil)
	release, err := l.acquire(context.Background())
	require.NoError(t, err)
	var mu sync.Mutex
	var order []int
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := l.acquire(context.Background())
			if !assert.NoError(t, err) {
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			r()
		}()
		// Each waiter is in line before the next one comes.
		eventually(t, func() bool { _, w := l.counts(); return w == i+1 }, "waiter in line")
	}
	release()
	wg.Wait()
	assert.Equal(t, []int{0, 1, 2}, order)
}

func TestLimiterWaiterGivesUp(t *testing.T) {
	l := newLimiter(1, 1, nil)
	release, err := l.acquire(context.Background())
	require.NoError(t, err)
	defer release()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := l.acquire(ctx)
		errc <- err
	}()
	eventually(t, func() bool { _, w := l.counts(); return w == 1 }, "waiting")
	cancel()
	assert.ErrorIs(t, <-errc, context.Canceled)
	_, waiting := l.counts()
	assert.Equal(t, 0, waiting, "a waiter that gave up leaves the queue")
}

func TestLimiterCloseRefusesWaitersAndNewcomers(t *testing.T) {
	var mu sync.Mutex
	var last [2]int
	l := newLimiter(1, 2, func(r, w int) { mu.Lock(); last = [2]int{r, w}; mu.Unlock() })
	release, err := l.acquire(context.Background())
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() {
		_, err := l.acquire(context.Background())
		errc <- err
	}()
	eventually(t, func() bool { _, w := l.counts(); return w == 1 }, "waiting")
	l.close()
	assert.ErrorIs(t, <-errc, errShuttingDown)
	_, err = l.acquire(context.Background())
	assert.ErrorIs(t, err, errShuttingDown)
	release()
	mu.Lock()
	assert.Equal(t, [2]int{0, 0}, last, "the gauges end at zero")
	mu.Unlock()
}

func TestLimiterZeroQueueRefusesAtOnce(t *testing.T) {
	l := newLimiter(1, 0, nil)
	release, err := l.acquire(context.Background())
	require.NoError(t, err)
	defer release()
	_, err = l.acquire(context.Background())
	assert.ErrorIs(t, err, errQueueFull)
}
