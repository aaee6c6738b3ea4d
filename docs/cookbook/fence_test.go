package cookbook_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver

	"github.com/renewlock/renewlock/docs/cookbook"
)

// postgres opens the PostgreSQL named by $RENEWLOCK_POSTGRES (a URL, e.g.
// postgres://postgres@127.0.0.1:5432/test) in a fresh schema with the
// recipe's tables, dropped when the test ends; without it, the test is
// skipped: CI needs no database.
func postgres(t *testing.T) *sql.DB {
	t.Helper()
	dsn := os.Getenv("RENEWLOCK_POSTGRES")
	if dsn == "" {
		t.Skip("set RENEWLOCK_POSTGRES to a PostgreSQL URL to run the fencing recipe against it")
	}
	ctx := context.Background()
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.Close() })
	schema := fmt.Sprintf("renewlock_cookbook_%d_%d", os.Getpid(), time.Now().UnixNano())
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = admin.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE") })
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	db, err := sql.Open("pgx", u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if _, err := db.ExecContext(ctx, cookbook.Schema); err != nil {
		t.Fatal(err)
	}
	return db
}

// A holder whose lock was taken over cannot overwrite the newer holder's
// report, nor commit a fenced transaction, even one it started while the
// newer holder's was open.
func TestFencedWrites(t *testing.T) {
	db := postgres(t)
	ctx := context.Background()
	locks := newClient(t)
	key := t.Name()

	old, err := locks.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := cookbook.WriteReport(ctx, db, old.Token(), "daily", "first"); err != nil {
		t.Fatal(err)
	}
	// The old holder is paused past its lease; an operator frees the lock.
	if _, err := locks.ForceRelease(ctx, key); err != nil {
		t.Fatal(err)
	}
	fresh, err := locks.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Release(ctx)

	for _, w := range []struct {
		token uint64
		body  string
		want  error
	}{
		{fresh.Token(), "new", nil},
		{old.Token(), "stale", cookbook.ErrFenced},
		{fresh.Token(), "newer", nil}, // the holder writes again under its token
	} {
		if err := cookbook.WriteReport(ctx, db, w.token, "daily", w.body); !errors.Is(err, w.want) {
			t.Fatalf("write %q: %v, want %v", w.body, err, w.want)
		}
	}
	var body string
	if err := db.QueryRowContext(ctx, "SELECT body FROM reports WHERE id = 'daily'").Scan(&body); err != nil || body != "newer" {
		t.Fatalf("report %q, %v", body, err)
	}

	// The newer holder's transaction is open when the old one's starts: the
	// old one waits on the fence row, then is refused.
	inTx := make(chan struct{})
	commit := make(chan struct{})
	newDone := make(chan error, 1)
	go func() {
		newDone <- cookbook.FencedTx(ctx, db, key, fresh.Token(), func(tx *sql.Tx) error {
			close(inTx)
			<-commit
			_, err := tx.ExecContext(ctx, "UPDATE reports SET body = 'by tx' WHERE id = 'daily'")
			return err
		})
	}()
	<-inTx
	oldDone := make(chan error, 1)
	go func() {
		oldDone <- cookbook.FencedTx(ctx, db, key, old.Token(), func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, "UPDATE reports SET body = 'stale tx' WHERE id = 'daily'")
			return err
		})
	}()
	select {
	case err := <-oldDone:
		t.Fatalf("the old holder's transaction did not wait: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(commit)
	if err := <-newDone; err != nil {
		t.Fatal(err)
	}
	if err := <-oldDone; !errors.Is(err, cookbook.ErrFenced) {
		t.Fatalf("old holder's transaction: %v", err)
	}
	if err := db.QueryRowContext(ctx, "SELECT body FROM reports WHERE id = 'daily'").Scan(&body); err != nil || body != "by tx" {
		t.Fatalf("report %q, %v", body, err)
	}
	_ = old.Release(ctx)
}
