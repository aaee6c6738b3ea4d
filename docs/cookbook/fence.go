package cookbook

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Schema is the PostgreSQL schema of the fencing recipe: a table whose rows
// carry the token of the holder that wrote them, and a table of fences,
// one row per lock, for transactions that touch many rows.
const Schema = `
CREATE TABLE IF NOT EXISTS reports (
    id    text   PRIMARY KEY,
    body  text   NOT NULL,
    fence bigint NOT NULL -- the token of the lock holder that wrote the row
);
CREATE TABLE IF NOT EXISTS lock_fences (
    lock_key text   PRIMARY KEY,
    fence    bigint NOT NULL -- the largest token seen for the lock
);`

// ErrFenced is returned for a write carrying an older token than one that
// has already written: its holder lost the lock (it was paused, partitioned
// or too slow), and a newer holder has taken over.
var ErrFenced = errors.New("fenced off: a newer lock holder has written")

// WriteReport stores a report under the lock's token. The row changes only
// if the token is at least the one stored with it, so a holder that lost
// its lease without noticing cannot overwrite what a newer holder wrote.
func WriteReport(ctx context.Context, db *sql.DB, token uint64, id, body string) error {
	res, err := db.ExecContext(ctx, `
		INSERT INTO reports (id, body, fence) VALUES ($1, $2, $3)
		ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body, fence = EXCLUDED.fence
		WHERE reports.fence <= EXCLUDED.fence`,
		id, body, int64(token)) // tokens are µs since 1970: far below 2⁶³
	if err != nil {
		return fmt.Errorf("write report %q: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return fmt.Errorf("write report %q with token %d: %w", id, token, ErrFenced)
	}
	return nil
}

// FencedTx runs fn in a transaction that commits only if token is at least
// the largest token seen for lockKey, and records it. The fence row stays
// locked until the transaction ends, so an older holder's transaction that
// runs at the same time waits, then finds the newer token and is refused.
func FencedTx(ctx context.Context, db *sql.DB, lockKey string, token uint64, fn func(*sql.Tx) error) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() // after Commit, a no-op
	res, err := tx.ExecContext(ctx, `
		INSERT INTO lock_fences (lock_key, fence) VALUES ($1, $2)
		ON CONFLICT (lock_key) DO UPDATE SET fence = EXCLUDED.fence
		WHERE lock_fences.fence <= EXCLUDED.fence`,
		lockKey, int64(token))
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return fmt.Errorf("lock %q, token %d: %w", lockKey, token, ErrFenced)
	}
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}
