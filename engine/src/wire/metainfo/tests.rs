//! Tests of parsing, encoding and validation; one per bad-input class.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

/// `<len>:<bytes>` for building test inputs.
fn bstr(bytes: &[u8]) -> Vec<u8> {
    let mut out = format!("{}:", bytes.len()).into_bytes();
    out.extend_from_slice(bytes);
    out
}

/// `d4:info<info>e`.
fn torrent_with_info(info: &[u8]) -> Vec<u8> {
    [b"d4:info".as_slice(), info, b"e"].concat()
}

/// A single-file info dict: `length`, `name`, `piece length`, `pieces` of `hash_count` hashes.
fn single_info(length: &str, name: &[u8], piece_len: &str, hash_count: usize) -> Vec<u8> {
    [
        format!("d6:lengthi{length}e4:name").into_bytes(),
        bstr(name),
        format!("12:piece lengthi{piece_len}e6:pieces").into_bytes(),
        bstr(&vec![b'x'; hash_count * 20]),
        b"e".to_vec(),
    ]
    .concat()
}

/// A multi-file info dict over `files` given as (bencoded path list, length).
fn multi_info(files: &[(&str, &str)], piece_len: &str, hash_count: usize) -> Vec<u8> {
    let mut list = b"l".to_vec();
    for (path, len) in files {
        list.extend_from_slice(format!("d6:lengthi{len}e4:path{path}e").as_bytes());
    }
    list.push(b'e');
    [
        b"d5:files".to_vec(),
        list,
        b"4:name3:top".to_vec(),
        format!("12:piece lengthi{piece_len}e6:pieces").into_bytes(),
        bstr(&vec![b'x'; hash_count * 20]),
        b"e".to_vec(),
    ]
    .concat()
}

fn parse(bytes: &[u8]) -> Result<Metainfo, MetainfoError> {
    Metainfo::from_bytes(bytes)
}

#[test]
fn single_file_parses_and_hashes_raw_info() {
    let info = single_info("5", b"a.bin", "4", 2);
    let meta = parse(&torrent_with_info(&info)).unwrap();
    assert_eq!(meta.info_hash(), InfoHash::of_info_bytes(&info));
    assert_eq!(meta.info_bytes(), info.as_slice());
    let i = meta.info();
    assert_eq!(
        (i.name(), i.total_len_bytes(), i.piece_count()),
        ("a.bin", 5, 2)
    );
    assert_eq!(i.piece_len_bytes_of(PieceIndex(0)), Some(4));
    assert_eq!(i.piece_len_bytes_of(PieceIndex(1)), Some(1));
    assert_eq!(i.piece_len_bytes_of(PieceIndex(2)), None);
    assert_eq!(i.files()[0].path_components(), ["a.bin"]);
    assert!(!i.is_multi_file() && !i.is_private());
}

#[test]
fn bare_info_dictionary_builds_the_same_metainfo() {
    let info = single_info("5", b"a.bin", "4", 2);
    let whole = parse(&torrent_with_info(&info)).unwrap();
    let tiers = vec![vec!["http://t/announce".to_string()], vec![]];
    let bare = Metainfo::from_info_bytes(&info, tiers).unwrap();
    assert_eq!(bare.info_hash(), whole.info_hash());
    assert_eq!(bare.info(), whole.info());
    assert_eq!(bare.trackers(), [vec!["http://t/announce".to_string()]]);
    // The round trip through a .torrent keeps the info-hash.
    assert_eq!(
        parse(&bare.to_bytes()).unwrap().info_hash(),
        whole.info_hash()
    );
    let mut trailing = info.clone();
    trailing.push(b'x');
    for bad in [&trailing[..], b"", b"le", &info[..info.len() - 1]] {
        assert!(Metainfo::from_info_bytes(bad, vec![]).is_err(), "{bad:?}");
    }
}

#[test]
fn multi_file_parses_with_offsets() {
    let info = multi_info(
        &[("l1:ae", "3"), ("l3:sub1:be", "0"), ("l1:ce", "6")],
        "4",
        3,
    );
    let meta = parse(&torrent_with_info(&info)).unwrap();
    let files = meta.info().files();
    let table: Vec<(String, u64, u64)> = files
        .iter()
        .map(|f| (f.path(), f.offset_bytes(), f.len_bytes()))
        .collect();
    assert_eq!(
        table,
        [
            ("top/a".to_string(), 0, 3),
            ("top/sub/b".to_string(), 3, 0),
            ("top/c".to_string(), 3, 6)
        ]
    );
    assert!(meta.info().is_multi_file());
}

#[test]
fn trackers_and_descriptive_fields() {
    let info = single_info("1", b"a", "1", 1);
    let bytes = [
        b"d8:announce3:u:113:announce-listll3:u:1el3:u:23:u:3ee7:comment2:hi10:created by1:p13:creation datei7e4:info".as_slice(),
        &info,
        b"e",
    ]
    .concat();
    let meta = parse(&bytes).unwrap();
    assert_eq!(meta.trackers(), [vec!["u:1"], vec!["u:2", "u:3"]]);
    assert_eq!(meta.comment(), Some("hi"));
    assert_eq!(meta.created_by(), Some("p"));
    assert_eq!(meta.creation_date(), Some(7));
    assert_eq!(
        meta.to_bytes(),
        bytes,
        "canonical input re-encodes identically"
    );
    let announce_only = [b"d8:announce3:u:14:info".as_slice(), &info, b"e"].concat();
    assert_eq!(parse(&announce_only).unwrap().trackers(), [vec!["u:1"]]);
}

#[test]
fn url_list_is_a_string_or_a_list() {
    let info = single_info("1", b"a", "1", 1);
    let with = |url_list: &[u8]| {
        let bytes = [b"d4:info".as_slice(), &info, b"8:url-list", url_list, b"e"].concat();
        parse(&bytes)
    };
    // BEP 19: one URL as a string, or a list; written back as read.
    for form in [b"9:http://h/".as_slice(), b"l9:http://h/9:http://g/e"] {
        let meta = with(form).unwrap();
        let want: &[&str] = if form[0] == b'l' {
            &["http://h/", "http://g/"]
        } else {
            &["http://h/"]
        };
        assert_eq!(meta.web_seeds(), want);
        assert_eq!(parse(&meta.to_bytes()).unwrap(), meta);
        assert!(meta.to_bytes().windows(form.len()).any(|w| w == form));
    }
    // Odd entries are skipped, odd types ignored: never a rejected torrent.
    let meta = with(b"l0:i3e1:\xffl1:ae9:http://h/e").unwrap();
    assert_eq!(meta.web_seeds(), ["http://h/"]);
    assert!(with(b"i1e").unwrap().web_seeds().is_empty());
    assert!(with(b"d1:a1:be").unwrap().web_seeds().is_empty());
    // Bounded: at most MAX_WEB_SEEDS kept.
    let many = [b"l".as_slice(), &b"9:http://h/".repeat(100), b"e"].concat();
    assert_eq!(with(&many).unwrap().web_seeds().len(), MAX_WEB_SEEDS);
    // The info-hash does not cover it.
    let plain = parse(&torrent_with_info(&info)).unwrap();
    assert_eq!(with(b"9:http://h/").unwrap().info_hash(), plain.info_hash());
    let added = plain.with_web_seeds(vec!["".into(), "http://x/".into()]);
    assert_eq!(added.web_seeds(), ["http://x/"]);
}

#[test]
fn unknown_info_keys_keep_the_info_hash() {
    let info = [
        single_info("1", b"a", "1", 1).strip_suffix(b"e").unwrap(),
        b"6:sourcei3ee",
    ]
    .concat();
    let meta = parse(&torrent_with_info(&info)).unwrap();
    let again = parse(&meta.to_bytes()).unwrap();
    assert_eq!(again.info_hash(), InfoHash::of_info_bytes(&info));
    assert_eq!(again, meta);
}

#[test]
fn private_flag() {
    let info = [
        single_info("1", b"a", "1", 1).strip_suffix(b"e").unwrap(),
        b"7:privatei1ee",
    ]
    .concat();
    assert!(parse(&torrent_with_info(&info))
        .unwrap()
        .info()
        .is_private());
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = torrent_with_info(&multi_info(&[("l1:ae", "3")], "4", 1));
    assert!(parse(&bytes).is_ok());
    for len in 0..bytes.len() {
        assert!(
            matches!(parse(&bytes[..len]), Err(MetainfoError::Bencode(_))),
            "{len}"
        );
    }
}

#[test]
fn non_canonical_bencode_is_refused() {
    let info = single_info("1", b"a", "1", 1);
    let cases: Vec<Vec<u8>> = vec![
        // Unsorted keys.
        [b"d4:info".as_slice(), &info, b"1:ai1ee"].concat(),
        // Duplicate key.
        [b"d4:info".as_slice(), &info, b"4:info", &info, b"e"].concat(),
        // Leading zero, negative zero, zero-padded string length.
        torrent_with_info(&single_info("01", b"a", "1", 1)),
        torrent_with_info(&single_info("-0", b"a", "1", 1)),
        [b"d04:info".as_slice(), &info, b"e"].concat(),
        // Trailing bytes.
        [torrent_with_info(&info), b"i1e".to_vec()].concat(),
        b"".to_vec(),
    ];
    for case in cases {
        assert!(
            matches!(parse(&case), Err(MetainfoError::Bencode(_))),
            "{:?}",
            String::from_utf8_lossy(&case)
        );
    }
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    let deep = [b"d1:a".as_slice(), &[b'l'; 10_000], &[b'e'; 10_000], b"e"].concat();
    assert!(matches!(parse(&deep), Err(MetainfoError::Bencode(_))));
}

#[test]
fn wrong_types_and_missing_fields() {
    assert_eq!(
        parse(b"i1e"),
        Err(MetainfoError::WrongType {
            field: "metainfo",
            expected: "a dictionary"
        })
    );
    assert_eq!(parse(b"de"), Err(MetainfoError::MissingField("info")));
    assert!(matches!(
        parse(b"d4:infoi1ee"),
        Err(MetainfoError::WrongType { field: "info", .. })
    ));
    let no_pieces = b"d4:infod6:lengthi1e4:name1:a12:piece lengthi1eee";
    assert_eq!(parse(no_pieces), Err(MetainfoError::MissingField("pieces")));
    let name_not_utf8 = single_info("1", b"\xff", "1", 1);
    assert_eq!(
        parse(&torrent_with_info(&name_not_utf8)),
        Err(MetainfoError::NotUtf8("name"))
    );
}

#[test]
fn piece_hash_length_and_count_are_checked() {
    let mut info = single_info("5", b"a", "4", 2);
    // 39 bytes of hashes: patch "40:" to "39:" and drop one byte.
    let pos = info.windows(3).position(|w| w == b"40:").unwrap();
    info.splice(pos..pos + 3, b"39:".iter().copied());
    info.remove(info.len() - 2);
    assert_eq!(
        parse(&torrent_with_info(&info)),
        Err(MetainfoError::PieceHashesLen { len_bytes: 39 })
    );
    let too_many = single_info("5", b"a", "4", 3);
    assert!(matches!(
        parse(&torrent_with_info(&too_many)),
        Err(MetainfoError::PieceCountMismatch {
            actual: 3,
            expected: 2,
            ..
        })
    ));
}

#[test]
fn negative_zero_and_overflowing_lengths_are_refused() {
    for (length, piece_len) in [
        ("-1", "4"),
        ("99999999999999999999", "4"),
        ("1", "-4"),
        ("1", "0"),
        ("1", "4294967296"),
    ] {
        let info = single_info(length, b"a", piece_len, 1);
        assert!(
            matches!(
                parse(&torrent_with_info(&info)),
                Err(MetainfoError::OutOfRange { .. })
            ),
            "{length} {piece_len}"
        );
    }
    let max = u64::MAX.to_string();
    let overflow = multi_info(&[("l1:ae", &max), ("l1:be", "1")], "4", 1);
    assert_eq!(
        parse(&torrent_with_info(&overflow)),
        Err(MetainfoError::TotalLenOverflow)
    );
    let zero = single_info("0", b"a", "4", 0);
    assert_eq!(parse(&torrent_with_info(&zero)), Err(MetainfoError::Empty));
}

#[test]
fn unsafe_paths_are_refused() {
    for path in [
        "l0:e",
        "l1:.e",
        "l2:..e",
        "l2:..1:ae",
        "l4:/etce",
        "l3:a/be",
        "l3:a\\be",
    ] {
        let info = multi_info(&[(path, "1")], "4", 1);
        assert!(
            matches!(
                parse(&torrent_with_info(&info)),
                Err(MetainfoError::BadPathComponent { .. })
            ),
            "{path}"
        );
    }
    let empty = multi_info(&[("le", "1")], "4", 1);
    assert_eq!(
        parse(&torrent_with_info(&empty)),
        Err(MetainfoError::EmptyPath)
    );
    for name in [b"..".as_slice(), b"", b"/etc"] {
        let info = single_info("1", name, "4", 1);
        assert!(matches!(
            parse(&torrent_with_info(&info)),
            Err(MetainfoError::BadPathComponent { .. })
        ));
    }
}

#[test]
fn padding_files_may_repeat_a_path() {
    let files = [
        ("l1:ae", "3"),
        ("l4:.pad1:1e", "1"),
        ("l1:be", "3"),
        ("l4:.pad1:1e", "1"),
        ("l1:ce", "3"),
    ];
    let info = multi_info(&files, "4", 3);
    // Mark the two `.pad/1` files as BEP 47 padding.
    let text = String::from_utf8(info.clone()).unwrap();
    let marked = text.replace(
        "d6:lengthi1e4:pathl4:.pad",
        "d4:attr1:p6:lengthi1e4:pathl4:.pad",
    );
    let meta = parse(&torrent_with_info(marked.as_bytes())).unwrap();
    let padding: Vec<bool> = meta
        .info()
        .files()
        .iter()
        .map(FileEntry::is_padding)
        .collect();
    assert_eq!(padding, [false, true, false, true, false]);
    assert_eq!(parse(&meta.to_bytes()).unwrap(), meta);
    // Unmarked `.pad/<len>` files (writers that set no `attr`) are padding too.
    let unmarked = parse(&torrent_with_info(&info)).unwrap();
    let padding: Vec<bool> = unmarked
        .info()
        .files()
        .iter()
        .map(FileEntry::is_padding)
        .collect();
    assert_eq!(padding, [false, true, false, true, false]);
    // Elsewhere the same paths are duplicates.
    let info = multi_info(
        &[("l1:ae", "3"), ("l3:pad1:1e", "1"), ("l3:pad1:1e", "1")],
        "4",
        2,
    );
    assert_eq!(
        parse(&torrent_with_info(&info)),
        Err(MetainfoError::DuplicatePath("top/pad/1".into()))
    );
}

#[test]
fn v2_only_torrents_are_refused_by_name_and_hybrids_read_as_v1() {
    // BEP 52: `file tree`, `meta version` 2, no `pieces` (keys in bencode order).
    let v2 = [
        b"d9:file treed5:a.bind0:d6:lengthi5e11:pieces root".to_vec(),
        bstr(&[b'.'; 32]),
        b"eee12:meta versioni2e4:name1:x12:piece lengthi16384ee".to_vec(),
    ]
    .concat();
    let err = parse(&torrent_with_info(&v2)).unwrap_err();
    assert_eq!(err, MetainfoError::V2Only);
    assert!(
        err.to_string()
            .starts_with("BitTorrent v2-only torrents are not supported"),
        "{err}"
    );
    // A hybrid has v1 `pieces` (and `length` / `files`) too: read as v1.
    let hybrid = [
        b"d6:lengthi5e12:meta versioni2e4:name1:x12:piece lengthi4e6:pieces".to_vec(),
        bstr(&[b'.'; 40]),
        b"e".to_vec(),
    ]
    .concat();
    let meta = parse(&torrent_with_info(&hybrid)).unwrap();
    assert_eq!(meta.info().piece_count(), 2);
}

#[test]
fn duplicate_paths_and_layout_are_checked() {
    let dup = multi_info(&[("l1:ae", "1"), ("l1:ae", "1")], "4", 1);
    assert_eq!(
        parse(&torrent_with_info(&dup)),
        Err(MetainfoError::DuplicatePath("top/a".into()))
    );
    let both = [
        b"d4:infod5:filesld6:lengthi1e4:pathl1:aeee6:lengthi1e4:name3:top".as_slice(),
        b"12:piece lengthi4e6:pieces20:xxxxxxxxxxxxxxxxxxxxee",
    ]
    .concat();
    assert_eq!(parse(&both), Err(MetainfoError::AmbiguousLayout));
    let neither = b"d4:infod4:name1:a12:piece lengthi1e6:pieces0:ee";
    assert_eq!(parse(neither), Err(MetainfoError::AmbiguousLayout));
    let no_files = multi_info(&[], "4", 0);
    assert_eq!(
        parse(&torrent_with_info(&no_files)),
        Err(MetainfoError::Empty)
    );
}

#[test]
fn auto_piece_len_is_a_clamped_power_of_two() {
    const MIB: u64 = 1024 * 1024;
    assert_eq!(auto_piece_len_bytes(1), MIN_AUTO_PIECE_LEN_BYTES);
    assert_eq!(auto_piece_len_bytes(4096 * MIB), 4 * MIB as u32);
    assert_eq!(auto_piece_len_bytes(u64::MAX), MAX_AUTO_PIECE_LEN_BYTES);
    for total in [300 * MIB, 1000 * MIB, 7777 * MIB, 20_000 * MIB] {
        let len = auto_piece_len_bytes(total);
        let count = piece_count(total, len);
        assert!(len.is_power_of_two());
        assert!(
            (1_000..=2_000).contains(&count),
            "{total} -> {len} -> {count}"
        );
    }
}

fn arb_component() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 _-]{1,8}"
}

fn arb_layout() -> impl Strategy<Value = Layout> {
    // Directories end in ".d", files in ".f": no file is ever a directory of another.
    let path = (
        prop::collection::vec(arb_component(), 0..3),
        arb_component(),
    )
        .prop_map(|(dirs, file)| {
            let mut path: Vec<String> = dirs.into_iter().map(|d| d + ".d").collect();
            path.push(file + ".f");
            path
        });
    prop_oneof![
        (1..100_000_u64).prop_map(|len_bytes| Layout::SingleFile { len_bytes }),
        prop::collection::btree_map(path, (0..50_000_u64, any::<bool>()), 1..8)
            .prop_map(|map: BTreeMap<_, _>| {
                let mut specs: Vec<FileSpec> = map
                    .into_iter()
                    .map(|(path_components, (len_bytes, padding))| FileSpec {
                        path_components,
                        len_bytes,
                        padding,
                    })
                    .collect();
                // At least one byte in the torrent.
                if let Some(first) = specs.first_mut() {
                    first.len_bytes += 1;
                }
                specs
            })
            .prop_map(Layout::MultiFile),
    ]
}

fn arb_metainfo() -> impl Strategy<Value = Metainfo> {
    (
        arb_component(),
        arb_layout(),
        4_u32..16,
        any::<bool>(),
        prop::collection::vec(prop::collection::vec("[a-z:/.]{1,20}", 0..3), 0..3),
        prop::option::of(".{0,20}"),
        any::<u64>(),
        any::<bool>(),
        prop::collection::vec("http://[a-z/.]{1,20}", 0..3),
    )
        .prop_map(
            |(
                name,
                layout,
                piece_len_log2,
                private,
                trackers,
                comment,
                seed,
                blake3,
                web_seeds,
            )| {
                let total: u64 = match &layout {
                    Layout::SingleFile { len_bytes } => *len_bytes,
                    Layout::MultiFile(specs) => specs.iter().map(|s| s.len_bytes).sum(),
                };
                let piece_len_bytes = 1 << piece_len_log2;
                let hashes = (0..piece_count(total, piece_len_bytes))
                    .map(|i| PieceHash::of_piece(&(seed ^ i).to_le_bytes()))
                    .collect();
                let mut info = Info::new(name, layout, piece_len_bytes, hashes, private).unwrap();
                if blake3 {
                    let b3 = (0..u64::from(info.piece_count()))
                        .map(|i| *::blake3::hash(&(seed ^ i).to_le_bytes()).as_bytes())
                        .collect();
                    info = info.with_blake3_hashes(b3).unwrap();
                }
                Metainfo::new(info, trackers, comment, Some("p2pe".into()), Some(1))
                    .with_web_seeds(web_seeds)
            },
        )
}

/// [`single_info`] with a `p2pe blake3` string of `blake3_len` bytes spliced
/// in where it sorts (after `name`).
fn single_info_blake3(hash_count: usize, blake3: &[u8]) -> Vec<u8> {
    [
        b"d6:lengthi5e4:name5:a.bin11:p2pe blake3".to_vec(),
        bstr(blake3),
        b"12:piece lengthi4e6:pieces".to_vec(),
        bstr(&vec![b'x'; hash_count * 20]),
        b"e".to_vec(),
    ]
    .concat()
}

#[test]
fn blake3_key_is_read_and_chosen_for_verification() {
    let digests: Vec<u8> = (0..64).collect();
    let meta = parse(&torrent_with_info(&single_info_blake3(2, &digests))).unwrap();
    let info = meta.info();
    assert_eq!(info.piece_hash_kind(), PieceHashKind::Blake3);
    let b3 = info.blake3_hashes().unwrap();
    assert_eq!((b3.len(), b3[1][0], b3[1][31]), (2, 32, 63));
    assert_eq!(info.verify_hashes(), PieceHashes::Blake3(b3.to_vec()));
    // Written back canonically and identically (the info-hash covers the key).
    let again = Metainfo::new(info.clone(), vec![], None, None, None);
    assert_eq!(again.info_bytes(), meta.info_bytes());
    assert_eq!(again.info_hash(), meta.info_hash());
    // Without the key: SHA-1, and another info-hash.
    let plain = parse(&torrent_with_info(&single_info("5", b"a.bin", "4", 2))).unwrap();
    assert_eq!(plain.info().piece_hash_kind(), PieceHashKind::Sha1);
    assert_eq!(plain.info().blake3_hashes(), None);
    assert!(matches!(plain.info().verify_hashes(), PieceHashes::Sha1(h) if h.len() == 2));
    assert_ne!(plain.info_hash(), meta.info_hash());
}

#[test]
fn blake3_key_of_the_wrong_shape_is_refused() {
    let bad_len = single_info_blake3(2, &[0; 63]);
    assert_eq!(
        parse(&torrent_with_info(&bad_len)),
        Err(MetainfoError::Blake3HashesLen { len_bytes: 63 })
    );
    for (count, actual) in [(1, 1), (3, 3), (0, 0)] {
        let info = single_info_blake3(2, &vec![7; count * 32]);
        assert_eq!(
            parse(&torrent_with_info(&info)),
            Err(MetainfoError::Blake3CountMismatch {
                actual,
                expected: 2
            }),
            "{count} digests"
        );
    }
    let not_bytes = b"d6:lengthi5e4:name5:a.bin11:p2pe blake3i1e12:piece lengthi4e6:pieces40:xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxe";
    assert_eq!(
        parse(&torrent_with_info(not_bytes)),
        Err(MetainfoError::WrongType {
            field: "p2pe blake3",
            expected: "a byte string"
        })
    );
    let info = parse(&torrent_with_info(&single_info("5", b"a.bin", "4", 2)))
        .unwrap()
        .info()
        .clone();
    assert_eq!(
        info.with_blake3_hashes(vec![[0; 32]; 3]),
        Err(MetainfoError::Blake3CountMismatch {
            actual: 3,
            expected: 2
        })
    );
}

proptest! {
    #[test]
    fn encode_then_parse_round_trips(meta in arb_metainfo()) {
        let bytes = meta.to_bytes();
        let parsed = Metainfo::from_bytes(&bytes).unwrap();
        prop_assert_eq!(&parsed, &meta);
        prop_assert_eq!(parsed.to_bytes(), bytes);
        prop_assert_eq!(parsed.info_hash(), InfoHash::of_info_bytes(meta.info_bytes()));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Metainfo::from_bytes(&bytes);
    }

    #[test]
    fn corrupted_torrents_never_panic(
        meta in arb_metainfo(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = meta.to_bytes();
        for (index, value) in flips {
            let at = index.index(bytes.len());
            bytes[at] = value;
        }
        let _ = Metainfo::from_bytes(&bytes);
    }
}
