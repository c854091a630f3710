//! Sans-IO swarm logic: peer state, piece picker, choker, torrent state machine.
