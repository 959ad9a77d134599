// Package chaos holds herald's chaos suite: on the real stack, with orders,
// inventory and the subscribers as separate `herald serve` processes,
// `herald bench` places orders while the orders process, the inventory
// process and the Kafka broker are killed with SIGKILL and restarted in a
// seeded random order and rhythm. Afterwards the suite checks the
// invariants the platform promises (see docs/reliability.md).
//
// It runs only when HERALD_CHAOS is "short" (CI) or "long" (make chaos)
// and the real stack's variables are set; HERALD_CHAOS_SEED replays a run.
package chaos
