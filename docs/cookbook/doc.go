// Package cookbook holds the code of the recipes in docs/cookbook.md, so
// that it compiles and is tested (make vet, make unit): every Go block of
// the cookbook is a verbatim excerpt of this package (TestCookbookQuotesCode
// checks that). It is its own module, so that its dependencies (a
// PostgreSQL driver, Prometheus, OpenTelemetry) never reach renewlock's
// users.
package cookbook
