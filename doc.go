// Package renewlock provides distributed locks on Redis that renew
// themselves while their holder is alive and hand every holder a fencing
// token.
//
// # The model
//
// A lock is a lease: Redis keeps it for a TTL (WithTTL, default 10 s), so a
// crashed holder cannot block others for longer than that. While a Lock is
// held, its Client extends the lease every renew interval (default TTL/3).
// One background loop per Client renews all of its locks that are due in a
// single pipelined round trip, and every renewal is owner-checked: it
// extends the lease only if the random owner id written at acquisition is
// still there, and it never re-creates a lapsed lock.
//
// The holder is told when it may no longer hold the lock: Lock.Done closes
// and Lock.Err wraps ErrLeaseLost, and the context given to Do's function is
// cancelled. That happens at once when a renewal finds another owner or no
// key, and at the latest at the validity deadline when renewals keep failing
// (Redis down, slow or unreachable). The deadline is measured on the local
// monotonic clock from the moment the last successful renewal was sent:
//
//	deadline = sent + TTL·(1 − drift) − safety margin
//
// Redis started its own countdown no earlier than that send, so the holder
// hears of a possible loss before Redis can expire the key and admit another
// holder, given that the two clocks' rates differ by less than drift.
//
// # Fencing tokens
//
// Each acquisition gets a token (Lock.Token) strictly larger than every
// earlier token for the same key, also after the lease expired or Redis
// restarted without its data: tokens are never below the Redis server's
// clock in microseconds. A lock alone cannot stop a holder that was paused
// (GC, SIGSTOP, VM freeze) past its deadline from acting when it wakes up;
// a resource that remembers the largest token it has seen and rejects
// smaller ones can. Pass the token along with every write.
//
// # Waiting
//
// Acquire waits without polling, in a queue: a call that finds the lock
// held joins the lock's queue in Redis in the same round trip, and waiters
// are served in arrival order, whichever client they are in. A release
// passes the lock straight to the first waiter (new owner id, new token,
// new lease) in the same script that checks the releasing owner, and tells
// only that waiter's Client, on the one pub/sub channel each Client
// subscribes to. So a release costs Redis the same work however many
// clients wait. A waiter's place is a lease too, renewed with the locks: a
// crashed waiter is skipped once its lease ends, by the server's clock. A
// holder that crashed passes the lock on when its lease ends.
//
// Waiting honours the context's cancellation and deadline, and a cancelled
// Acquire leaves nothing behind in Redis: it leaves the queue, and a lock
// granted to it meanwhile is passed on to the next waiter. A single Redis
// call in flight is bounded as go-redis bounds it: by the client's read and
// write timeouts, and by the context's deadline if ContextTimeoutEnabled is
// set.
//
// # The lock family
//
// The same lease engine — renewal in batches, the queue, grants, loss
// signals, fencing tokens — serves four kinds of lock, each named by a
// string (one name is one kind of lock):
//
//   - a mutex: Acquire, TryAcquire, Do;
//   - a semaphore: AcquirePermit and TryAcquirePermit give one of limit
//     permits, each a Lock with its own lease;
//   - a read-write lock: AcquireRead and AcquireWrite (and the Try forms);
//     readers share, a writer is alone, and a waiting writer is not
//     overtaken by readers that come after it;
//   - leader election: Campaign (and Lead, its callback form) makes one
//     candidate leader at a time, with a Term that only goes up; Leader
//     reads the current leader and Observe delivers every change.
//
// Every lease of every kind gets a fencing token larger than every token
// issued before for its name, and every wait is served in arrival order.
//
// # Not reentrant
//
// A Lock is not reentrant: acquiring a name that the same program already
// holds waits (or fails, with TryAcquire) like any other acquisition. This
// is deliberate, as for Go's sync.Mutex: a lock that a goroutine may take
// again hides which code relies on the invariant it protects, and ties
// ownership to something (a goroutine, a thread) that Go does not expose.
// Pass the *Lock to the code that needs it instead, and let that code check
// Done or use the token; a function that must run under the lock can take
// the *Lock as an argument, which documents the requirement in its
// signature.
//
// # Errors
//
// Errors are checked with errors.Is: ErrNotAcquired (TryAcquire found the
// key held), ErrLeaseLost, ErrReleased, ErrClientClosed, and
// ErrInvalidArgument for bad input (the message names the value). A
// cancelled context is reported as its own error, never as ErrNotAcquired.
// A Redis error that retrying cannot fix (an ACL denial, a failed login, a
// key of another type where the lock should be) wraps ErrRejected, and
// ErrPermission for rights, and is returned at once; transient ones
// (connection loss, timeouts, LOADING, BUSY, TRYAGAIN, CLUSTERDOWN, OOM, …)
// are retried until the context or the validity deadline ends.
//
// # Shutdown
//
// Close closes every held lock's Done at once (Err is ErrClientClosed),
// then releases the locks and leaves the queues in one round trip, and
// returns within a few seconds even if Redis does not answer.
//
// # Limits
//
// Mutual exclusion holds for a single Redis primary that does not lose
// data. A failover to a replica that had not received the lock, or a restart
// without persistence, can let a second holder in while the first still
// believes it holds the lock; fencing tokens keep a resource that checks
// them safe even then. See the README's "Guarantees and limits".
package renewlock
