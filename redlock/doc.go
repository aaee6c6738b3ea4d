// Package redlock takes locks on a majority of N independent Redis masters
// (the Redlock algorithm), with what the renewlock mutex adds to a lock:
// leases that renew themselves, a holder told the moment the lock may be
// lost, and fencing tokens — here strictly increasing per key across
// acquisitions, which no other Redlock offers.
//
//	masters := []redis.UniversalClient{rdb1, rdb2, rdb3} // independent servers
//	locks, err := redlock.New(masters, renewlock.WithTTL(10*time.Second))
//	...
//	l, err := locks.Acquire(ctx, "orders:42")
//	...
//	defer l.Release(context.Background())
//	store.Write(l.Token(), data) // the store rejects tokens below the largest it has seen
//
// # The algorithm
//
// A Client keeps one renewlock.Client per master. A lock is one renewlock
// mutex lock per master (a part), renewed by that master's Client: the
// renewals of every lock held on a master are one pipelined round trip per
// renew interval.
//
// An acquisition asks every master at once to take the key (one script
// call each, never queued) and is won as soon as a quorum, N/2+1, took it;
// masters that answer later join the lock if they took the key, and release
// it otherwise. If a quorum is out of reach, or has not answered within a
// tenth of the TTL (at least 50 ms), whatever was taken is released. Each
// part's validity deadline is measured, as the mutex's is, from the moment
// its request was sent, so every part's deadline is at least
// start + TTL·(1 − drift) − margin, the Redlock validity bound; a lock is
// handed out only while a quorum of its parts is before its deadline, and
// is lost — Done closes, Err wraps renewlock.ErrLeaseLost, the remaining
// parts are released — the moment fewer than a quorum are. A part's
// deadline precedes its master's expiry of the key, so the holder hears of
// the loss before a quorum of masters could admit another holder.
//
// Acquire retries until its context ends, first come, first served, woken
// by releases rather than timers. Waiting goes through one master chosen
// per key, the gate: a waiter that finds the key held waits in the gate's
// renewlock queue, holding nothing. The holder's release there hands the
// gate to the first waiter (the gate is released after the other
// masters), which then takes the others, and meanwhile every attempt that
// finds the gate held or queued for yields, even with a quorum of the
// others free. The waiter the gate serves is the only one that waits in
// another master's queue (one the holder still has), and it holds only
// what it was handed. So two waiters that each hold a minority never wait
// for each other — the deadlock of queueing on N masters independently:
// whatever the served waiter waits for is held by the lock's holder, which
// waits for nothing, or by an attempt that is about to yield. A waiter
// that cannot reach a quorum lets the gate go, and a gate master that is
// down or does not answer stops nobody: the others sleep a short random
// backoff between attempts instead.
//
// # Fencing tokens
//
// Each master issues a token when it takes the key: max(the last token it
// stored for the key + 1, its clock in µs). The lock's token is the
// largest the quorum issued, and it is written back before the lock is
// handed out: a script raises the stored token to it on every master where
// the lock is held (owner-checked), and a quorum must acknowledge that very
// value. Every later quorum shares a master with this one, and that master
// then issues a larger token. A token the write-back puts ahead of what a
// master's clock will read when its lease can expire (another master's
// clock ahead, say) is also kept in a token floor on that master, a
// string PREFIX+"redlock-floor:"+KEY with a TTL that ends once the clock
// has passed it, so it outlives a lease that expires unreleased.
//
// An acquisition therefore costs three round trips, each to all masters in
// parallel (take, write back; release), against the two of a Redlock
// without fencing.
//
// # What is guaranteed
//
// Given clocks that run at rates within the drift of each other (WithDrift,
// default 1 %), and masters that, when they lose data (a restart without
// persistence, or with writes not yet fsynced), stay out for one TTL
// before serving again (a delayed restart):
//
//   - Mutual exclusion while valid: at any instant at most one holder of a
//     key is before the moment its Done closes.
//   - Availability: an acquisition succeeds while a quorum of masters is
//     up and reachable. A held lock keeps taking, once per renew interval,
//     the masters where it has no valid part (held by another when it was
//     taken, or restarted empty since), so it soon holds every master that
//     is up, and then survives any minority of them going down, pausing,
//     being cut off or restarting empty. Until then it may hold a bare
//     quorum, which the failure of any one of its masters ends.
//   - Loss is signalled before a quorum could admit another holder: a part
//     ends at the next renewal on its master when that master has another
//     owner or no key (a restart), and at its deadline when the master
//     does not answer (down, paused, partitioned); the lock ends when fewer
//     than a quorum of its parts are left.
//
// Fencing tokens strictly increase per key: the token of an acquisition B
// is larger than that of every acquisition A of the key that was handed
// out before B began, whenever either
//
//   - a master that is both among those A's token was written back to (a
//     quorum at least) and in B's quorum (any two quorums share a master)
//     kept its data until B took the key there — so always when no master
//     lost data, however far apart the masters' clocks are, across
//     releases, hand-offs, leases that expired, and masters that are down;
//     or
//   - the clocks of B's quorum read more than A's token when B takes the
//     key — so always when the masters' clocks differ by less than the
//     time between the two acquisitions, even if every master lost its
//     data. (A's token is the largest clock reading of A's quorum, unless
//     an earlier token had run ahead of the clocks.)
//
// What is not guaranteed:
//
//   - A holder paused (GC, SIGSTOP, VM freeze) past its deadline may still
//     act when it wakes; so may one whose clock ran slow. No lock can stop
//     that (Kleppmann, "How to do distributed locking"); the fencing token
//     can, if the resource checks it. Plain Redlock has no such token,
//     which was the core of that critique; antirez's reply ("Is Redlock
//     safe?") answers the timing questions but leaves fencing to a
//     unique-value compare-and-set. Here the token is a number that only
//     rises, so the resource needs no more than "reject smaller".
//   - A master that restarts empty at once (no delayed restart) is the
//     classic hole: if it was part of a holder's bare quorum, another
//     client can take the key on it and on a free master while the holder
//     still believes it holds the lock, until the holder's next renewal
//     there (within one renew interval). The newcomer's token is still
//     larger, by the clock rule above. With a delayed restart of one TTL,
//     or appendonly yes with appendfsync always, the holder is told of the
//     loss before the master is back, and this cannot happen.
//   - When more than a minority of masters lose data at once, exclusion is
//     gone until the old holder's next renewal, and a token that had run
//     ahead of the clocks of the next quorum is forgotten with the masters
//     that knew it: the next token can then be smaller (both token rules
//     fail at once).
//   - A master's clock stepped backward (not slewed) can issue smaller
//     tokens after a release or expiry, as the mutex's do, and makes its
//     leases end early or late. Run NTP in slew mode on the masters.
//
// The tests name, for each fault, the test that shows the behaviour
// described here; GUARANTEES.md in the repository has the table.
//
// # Keys in Redis
//
// On each master a lock is renewlock's hash PREFIX+KEY (owner, token,
// holder, acquisition time, and the gate's queue while someone waits), and
// at times the token floor PREFIX+"redlock-floor:"+KEY. A key must be
// locked either with a redlock.Client or with renewlock mutexes, not both.
// Besides the mutex's commands, the scripts use GET and SET (for the
// floor); add +get +set to a lock user's ACL.
//
// # Errors
//
// The errors wrap renewlock's sentinels: ErrNotAcquired (TryAcquire found
// the key held by others on so many masters that no quorum was left),
// ErrLeaseLost, ErrReleased, ErrClientClosed, ErrInvalidArgument (bad
// masters or options; the message says which), and ErrRejected or
// ErrPermission for a Redis error that retrying cannot fix, returned at
// once when it leaves no quorum. A cancelled context is reported as its
// own error, never as ErrNotAcquired.
package redlock
