//! Fuzz the magnet link parser (BEP 9): arbitrary text must never panic;
//! whatever parses must format to a link that parses to the same value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use p2pe::wire::magnet::MagnetLink;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // Most inputs lack the prefix; give half of them one.
    let with_prefix = format!("magnet:?{text}");
    for t in [text.as_ref(), with_prefix.as_str()] {
        if let Ok(link) = MagnetLink::parse(t) {
            let again = MagnetLink::parse(&link.to_uri()).expect("formatted link parses");
            assert_eq!(again, link);
        }
    }
});
