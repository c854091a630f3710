//! p2pe: a peer-to-peer distribution engine speaking the BitTorrent protocol.
//!
//! Layout (see `STYLE.md`):
//! - [`base`]: the protocol types every layer shares (piece index, block offset,
//!   block, file spec, info-hash, peer id, block length, the sans-IO instant `Time`,
//!   the bitfield, the peer-wire control messages).
//! - [`wire`]: bencode, metainfo (BEP 3) and peer-wire (BEP 3/6/10) codecs; no I/O.
//! - [`core`]: sans-IO swarm state machines: peer state, piece picker, choker,
//!   torrent. No sockets, no clock, no threads, no randomness of their own.
//! - [`sim`]: seeded deterministic discrete-event swarm simulator driving [`core`].
//! - [`store`]: piece storage (the only memory mappings of the data files,
//!   resume record); the sole maker of the runtime's send regions, of
//!   verified pieces only.
//! - [`node`]: a running node: runtime + wire + core + store for one torrent.
//! - [`discovery`]: sans-IO tracker client, the node's tracker and DHT (BEP 5)
//!   threads beside it, and the embedded tracker server (BEP 3, 12, 15).
//! - [`rt`]: io_uring thread-per-core runtime moving the bytes (I/O `unsafe`);
//!   maps no file, sends [`rt::Region`]s, which only `unsafe` code can make.
//!
//! Guard rails: `unsafe` is forbidden everywhere but [`rt`] and [`store`]
//! (memory maps; the workspace denies it in `Cargo.toml`'s
//! `[workspace.lints]`); clock reads (`Instant::now`, `SystemTime::now`) are
//! denied in the sans-IO modules [`core`], [`wire`] and [`sim`]
//! (`engine/clippy.toml`).
#![warn(missing_docs)]
// Clock reads are legitimate in the drivers; `core`, `wire` and `sim` deny them.
#![allow(clippy::disallowed_methods)]

#[forbid(unsafe_code)]
pub mod base;
#[forbid(unsafe_code)]
pub mod core;
#[forbid(unsafe_code)]
pub mod discovery;
#[forbid(unsafe_code)]
pub mod node;
// The I/O unsafe: io_uring submissions, sends from mapped pages (each block has a `// SAFETY:`).
#[allow(unsafe_code)]
pub mod rt;
#[forbid(unsafe_code)]
pub mod sim;
// The mapping's unsafe: mmap of the torrent's files, and the send regions made of
// verified pieces (each block has a `// SAFETY:`).
#[allow(unsafe_code)]
pub mod store;
#[forbid(unsafe_code)]
pub mod wire;
