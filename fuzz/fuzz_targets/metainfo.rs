//! Fuzz `Metainfo::from_bytes` (BEP 3 metainfo parser): arbitrary bytes must
//! never panic; whatever parses must re-encode to bytes that parse to the same
//! metainfo with the same info-hash.
#![no_main]
use libfuzzer_sys::fuzz_target;
use p2pe::wire::metainfo::Metainfo;

fuzz_target!(|data: &[u8]| {
    if let Ok(meta) = Metainfo::from_bytes(data) {
        let again = Metainfo::from_bytes(&meta.to_bytes()).expect("re-encoded metainfo parses");
        assert_eq!(again, meta);
        assert_eq!(again.info_hash(), meta.info_hash());
    }
});
