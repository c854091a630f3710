//! Fuzz the BEP 9 `ut_metadata` message codec and the bare info dictionary
//! parser a fetched metadata goes through: arbitrary bytes must never
//! panic; decoded messages re-encode to bytes that decode the same; a parsed
//! info dictionary hashes to the SHA-1 of exactly its bytes.
#![no_main]
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use p2pe::wire::metainfo::{InfoHash, Metainfo};
use p2pe::wire::peer::metadata::MetadataMessage;

fuzz_target!(|data: &[u8]| {
    let payload = Bytes::copy_from_slice(data);
    if let Ok(msg) = MetadataMessage::from_payload(&payload) {
        assert_eq!(MetadataMessage::from_payload(&msg.to_payload()), Ok(msg));
    }
    if let Ok(meta) = Metainfo::from_info_bytes(data, Vec::new()) {
        assert_eq!(meta.info_hash(), InfoHash::of_info_bytes(data));
        assert_eq!(meta.info_bytes(), data);
    }
});
