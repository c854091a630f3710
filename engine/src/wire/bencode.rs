//! The one bencode writer (BEP 3 §"bencoding") of the wire codecs: metainfo,
//! tracker responses and PEX payloads all encode through it.
//!
//! Why not bendy's `Encoder`: the metainfo must splice the `info` dictionary's
//! bytes in verbatim (its SHA-1 is the info-hash), and the tracker's answers are
//! on the announce hot path, where bendy's encoder allocates per value. The
//! writer is a handful of append functions; callers write dictionary keys in
//! sorted order (bencode requires it). A property test checks that what it
//! writes is exactly what bendy's strict decoder reads back and bendy's encoder
//! writes for the same values.

use std::io::Write as _;

/// Appends a byte string: `<len>:<bytes>`.
pub(crate) fn bytes(out: &mut Vec<u8>, value: &[u8]) {
    let _ = write!(out, "{}:", value.len());
    out.extend_from_slice(value);
}

/// Appends an integer: `i<value>e`.
pub(crate) fn int(out: &mut Vec<u8>, value: i64) {
    let _ = write!(out, "i{value}e");
}

/// Appends a list of byte strings: `l<bytes>…e`.
pub(crate) fn bytes_list<S: AsRef<[u8]>>(out: &mut Vec<u8>, items: &[S]) {
    out.push(b'l');
    for item in items {
        bytes(out, item.as_ref());
    }
    out.push(b'e');
}

/// Appends a dictionary entry whose value is a byte string.
pub(crate) fn key_bytes(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    bytes(out, key);
    bytes(out, value);
}

/// Appends a dictionary entry whose value is an integer.
pub(crate) fn key_int(out: &mut Vec<u8>, key: &[u8], value: i64) {
    bytes(out, key);
    int(out, value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use bendy::decoding::{Decoder, Object};
    use bendy::encoding::{AsString, SingleItemEncoder, ToBencode};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// A bencode value for the round trip.
    #[derive(Debug, Clone, PartialEq)]
    enum Value {
        Int(i64),
        Bytes(Vec<u8>),
        List(Vec<Value>),
        Dict(BTreeMap<Vec<u8>, Value>),
    }

    fn write(out: &mut Vec<u8>, v: &Value) {
        match v {
            Value::Int(i) => int(out, *i),
            Value::Bytes(b) => bytes(out, b),
            Value::List(items) => {
                out.push(b'l');
                for i in items {
                    write(out, i);
                }
                out.push(b'e');
            }
            Value::Dict(entries) => {
                out.push(b'd');
                for (k, v) in entries {
                    bytes(out, k);
                    write(out, v);
                }
                out.push(b'e');
            }
        }
    }

    impl ToBencode for Value {
        const MAX_DEPTH: usize = 16;
        fn encode(&self, e: SingleItemEncoder) -> Result<(), bendy::encoding::Error> {
            match self {
                Value::Int(i) => e.emit_int(*i),
                Value::Bytes(b) => e.emit(&AsString(b)),
                Value::List(items) => e.emit_list(|l| items.iter().try_for_each(|i| l.emit(i))),
                Value::Dict(entries) => e.emit_dict(|mut d| {
                    entries
                        .iter()
                        .try_for_each(|(k, v)| d.emit_pair(k.as_slice(), v))
                }),
            }
        }
    }

    fn read(o: Object) -> Value {
        match o {
            Object::Integer(s) => Value::Int(s.parse().unwrap()),
            Object::Bytes(b) => Value::Bytes(b.to_vec()),
            Object::List(mut l) => {
                let mut items = Vec::new();
                while let Some(i) = l.next_object().unwrap() {
                    items.push(read(i));
                }
                Value::List(items)
            }
            Object::Dict(mut d) => {
                let mut entries = BTreeMap::new();
                while let Some((k, v)) = d.next_pair().unwrap() {
                    entries.insert(k.to_vec(), read(v));
                }
                Value::Dict(entries)
            }
        }
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(Value::Int),
            proptest::collection::vec(any::<u8>(), 0..24).prop_map(Value::Bytes),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::List),
                proptest::collection::btree_map(
                    proptest::collection::vec(any::<u8>(), 0..8),
                    inner,
                    0..6
                )
                .prop_map(Value::Dict),
            ]
        })
    }

    proptest! {
        #[test]
        fn what_we_write_is_what_bendy_reads_and_writes(v in value()) {
            let mut ours = Vec::new();
            write(&mut ours, &v);
            let mut decoder = Decoder::new(&ours).with_max_depth(16);
            let back = read(decoder.next_object().unwrap().unwrap());
            prop_assert_eq!(&back, &v);
            prop_assert_eq!(ours, v.to_bencode().unwrap());
        }
    }

    #[test]
    fn entries_and_lists() {
        let mut out = vec![b'd'];
        key_int(&mut out, b"interval", -3);
        key_bytes(&mut out, b"peers", b"ab");
        bytes(&mut out, b"x");
        bytes_list(&mut out, &["a", "bc"]);
        out.push(b'e');
        assert_eq!(out, b"d8:intervali-3e5:peers2:ab1:xl1:a2:bcee");
    }
}
