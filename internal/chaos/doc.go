// Package chaos holds herald's chaos suite: on the real stack, with orders,
// inventory (one or two instances) and the subscribers as separate
// `herald serve` processes, `herald bench` places orders while faults hit
// in a seeded random order and rhythm: the orders and inventory processes
// killed with SIGKILL and restarted; the Kafka broker killed, or paused with
// SIGSTOP/SIGCONT; PostgreSQL stopped (fast shutdown) or its postmaster
// killed; the schema registry restarted. Afterwards the suite checks the
// invariants the platform promises (see docs/reliability.md), among them no
// dead letters and every order final within 15 s of the last fault, and
// prints per fault kind the time to recover and the orders affected.
//
// It runs only when HERALD_CHAOS is "short" (CI), "pair" (short, two
// inventory instances) or "long" (make chaos) and the real stack's
// variables are set; HERALD_CHAOS_SEED replays a run. The faults act
// through scripts/infra, so the HERALD_INFRA_* variables must name the
// stack the suite runs on.
package chaos
