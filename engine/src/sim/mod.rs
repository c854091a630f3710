//! Seeded deterministic discrete-event swarm simulator.
