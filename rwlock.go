package renewlock

import "context"

// AcquireRead takes a read share of the read-write lock name: many readers
// may hold it at once, but not while a writer does. It waits as Acquire
// does, in the lock's queue: a reader that arrives while a writer waits
// queues behind the writer, so a stream of readers cannot starve writers.
// Readers at the head of the queue are let in together. Each share is a
// Lock with its own lease, renewed by the Client's renewal loop; a reader
// that crashed frees its share when its lease ends. Its Token is larger
// than every token issued before for name.
//
// One name is one kind of lock: a name used as a mutex, an election or a
// semaphore cannot be a read-write lock at the same time (ErrRejected).
func (c *Client) AcquireRead(ctx context.Context, name string, opts ...Option) (*Lock, error) {
	return c.take(ctx, kindRWLock, name, opts, true, func(le *lease) { le.args = &kindArgs{mode: "s"} })
}

// AcquireWrite takes the read-write lock name for writing: alone, with no
// reader and no other writer. It waits as AcquireRead does, in the same
// queue. Its Token is larger than every token issued before for name, the
// readers' included, so a resource that checks tokens sees every write
// after the reads that preceded it.
func (c *Client) AcquireWrite(ctx context.Context, name string, opts ...Option) (*Lock, error) {
	return c.take(ctx, kindRWLock, name, opts, true, func(le *lease) { le.args = &kindArgs{mode: "x"} })
}

// TryAcquireRead makes one attempt to take a read share of name, as
// AcquireRead, without waiting: if a writer holds it or anyone waits, it
// returns an error wrapping ErrNotAcquired.
func (c *Client) TryAcquireRead(ctx context.Context, name string, opts ...Option) (*Lock, error) {
	return c.take(ctx, kindRWLock, name, opts, false, func(le *lease) { le.args = &kindArgs{mode: "s"} })
}

// TryAcquireWrite makes one attempt to take name for writing, as
// AcquireWrite, without waiting: if anyone holds it or waits, it returns an
// error wrapping ErrNotAcquired.
func (c *Client) TryAcquireWrite(ctx context.Context, name string, opts ...Option) (*Lock, error) {
	return c.take(ctx, kindRWLock, name, opts, false, func(le *lease) { le.args = &kindArgs{mode: "x"} })
}
