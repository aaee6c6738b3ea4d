package renewlock_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/renewlock/renewlock"
)

// Campaign for leadership, work while leader, and resign. Term is the
// fencing token of the leadership: strictly larger for every later leader.
func ExampleClient_Campaign() {
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	c, err := renewlock.New(rdb)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	ctx := context.Background()
	l, err := c.Campaign(ctx, "example:scheduler", "scheduler-1:8080")
	if err != nil {
		log.Fatal(err)
	}
	ld, err := c.Leader(ctx, "example:scheduler")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("leader:", ld.Value, ld.Term == l.Term())
	if err := l.Resign(ctx); err != nil {
		log.Fatal(err)
	}
	// Output:
	// leader: scheduler-1:8080 true
}

// Lead runs a function only while leader, in the callback style of
// Kubernetes' leaderelection: the function's context is cancelled the
// moment leadership is lost, and the leader resigns when it returns.
func ExampleClient_Lead() {
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	c, err := renewlock.New(rdb)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	err = c.Lead(context.Background(), "example:compactor", "host-a", func(ctx context.Context, l *renewlock.Leadership) error {
		fmt.Println("leading", l.Name())
		return nil // long-running leader work goes here; stop when ctx is done
	})
	fmt.Println("resigned:", err == nil)
	// Output:
	// leading example:compactor
	// resigned: true
}

// Observe an election: the channel delivers the current leader and then
// every change, as it happens.
func ExampleClient_Observe() {
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	c, err := renewlock.New(rdb)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	changes := c.Observe(ctx, "example:observed")
	fmt.Printf("now: %q\n", (<-changes).Value) // nobody yet

	l, err := c.Campaign(ctx, "example:observed", "node-7")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("then: %q\n", (<-changes).Value)
	_ = l.Resign(ctx)
	fmt.Printf("after resigning: %q\n", (<-changes).Value)
	// Output:
	// now: ""
	// then: "node-7"
	// after resigning: ""
}

// A semaphore: at most limit holders of a name at once, across every
// client. Each permit is a Lock, renewed in the background, with a fencing
// token larger than any issued before for the name.
func ExampleClient_AcquirePermit() {
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	c, err := renewlock.New(rdb)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	ctx := context.Background()
	const limit = 2 // e.g. at most two jobs against the reporting database
	a, err := c.AcquirePermit(ctx, "example:reports-db", limit)
	if err != nil {
		log.Fatal(err)
	}
	b, err := c.AcquirePermit(ctx, "example:reports-db", limit)
	if err != nil {
		log.Fatal(err)
	}
	_, err = c.TryAcquirePermit(ctx, "example:reports-db", limit)
	fmt.Println("third permit:", err != nil)
	fmt.Println("tokens rise:", b.Token() > a.Token())
	_ = a.Release(ctx)
	_ = b.Release(ctx)
	// Output:
	// third permit: true
	// tokens rise: true
}

// A read-write lock: many readers at once, or one writer. A writer that
// waits is not overtaken by readers that come after it.
func ExampleClient_AcquireWrite() {
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	c, err := renewlock.New(rdb)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	ctx := context.Background()
	r1, _ := c.AcquireRead(ctx, "example:catalog")
	r2, _ := c.AcquireRead(ctx, "example:catalog") // readers share
	_, err = c.TryAcquireWrite(ctx, "example:catalog")
	fmt.Println("writer while reading:", err != nil)
	_ = r1.Release(ctx)
	_ = r2.Release(ctx)
	w, err := c.AcquireWrite(ctx, "example:catalog")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("writer's token above the readers':", w.Token() > r2.Token())
	_ = w.Release(ctx)
	// Output:
	// writer while reading: true
	// writer's token above the readers': true
}
