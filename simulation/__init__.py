"""A deterministic fault simulator: the ledger, the settlement policy, the watchdog, simulated piles and
drivers in one process on in-memory stores and a simulated clock, driven by a seed (docs/fault-simulator.md)."""
