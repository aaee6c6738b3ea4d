// Package observe plugs renewlock's Observer hook into monitoring systems.
// It is its own module, so that users of renewlock who do not need it
// download neither Prometheus nor OpenTelemetry.
//
//   - [github.com/renewlock/renewlock/observe/promobserve]: Prometheus
//     metrics (a prometheus.Collector).
//   - [github.com/renewlock/renewlock/observe/otelobserve]: OpenTelemetry
//     spans for acquisitions and holds, and metrics through the OTel metric
//     API.
//
// Both report the same information under the same metric names (the
// OpenTelemetry instruments are named so that OTel's Prometheus exporter
// turns them into promobserve's names). A Client has one Observer; Join
// combines several, for instance Prometheus metrics with OpenTelemetry
// traces:
//
//	metrics := promobserve.New()
//	traces, err := otelobserve.New(otelobserve.WithMeterProvider(noop.NewMeterProvider()))
//	...
//	locks, err := renewlock.New(rdb, renewlock.WithObserver(observe.Join(metrics.Observer(), traces.Observer())))
//
// Lock names are usually unbounded (one per order, per user, per job), so
// neither package puts the key into a metric unless asked to, for a fixed
// list of keys.
package observe

import "github.com/renewlock/renewlock"

// Join returns an Observer that tells each of observers, in order, of every
// event. Nil observers and nil fields are skipped; a field that none of the
// observers sets stays nil, so it still costs the Client nothing.
func Join(observers ...*renewlock.Observer) *renewlock.Observer {
	var acquired []func(renewlock.AcquireEvent)
	var renewed []func(renewlock.RenewEvent)
	var lost []func(renewlock.LostEvent)
	var released []func(renewlock.ReleaseEvent)
	for _, o := range observers {
		if o == nil {
			continue
		}
		if o.Acquired != nil {
			acquired = append(acquired, o.Acquired)
		}
		if o.Renewed != nil {
			renewed = append(renewed, o.Renewed)
		}
		if o.Lost != nil {
			lost = append(lost, o.Lost)
		}
		if o.Released != nil {
			released = append(released, o.Released)
		}
	}
	return &renewlock.Observer{
		Acquired: fanOut(acquired),
		Renewed:  fanOut(renewed),
		Lost:     fanOut(lost),
		Released: fanOut(released),
	}
}

// fanOut returns a function calling each of fs in order, nil for none.
func fanOut[E any](fs []func(E)) func(E) {
	switch len(fs) {
	case 0:
		return nil
	case 1:
		return fs[0]
	}
	return func(e E) {
		for _, f := range fs {
			f(e)
		}
	}
}
