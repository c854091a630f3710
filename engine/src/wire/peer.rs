//! Peer wire protocol codec (BEP 3, BEP 6, BEP 10).
