//! Receive-path benchmark: where received `piece` payloads go.
//!
//! A sender thread streams `--size-gib` of BEP 3 `piece` messages (13-byte
//! header + `--block-bytes` payload, gathered up to 1 MiB per `sendmsg`) over
//! one TCP connection on 127.0.0.1 from a 64 MiB pseudo-random buffer; a
//! receiver thread stores every payload into a fresh, preallocated file at its
//! offset by one of these paths:
//!
//! - `decoder`: today's node path: `read` into a 256 KiB buffer, copy into the
//!   wire [`Decoder`] (`extend` + `next_message`), copy the block into a
//!   shared mapping of the file;
//! - `copy`: `read` into the buffer, streaming decode
//!   ([`Decoder::decode_from`]), copy payload slices into the mapping;
//! - `pwrite`: as `copy`, but `pwrite(2)` payload slices to the file;
//! - `direct`: as `copy`, but once the buffer is used up inside a payload,
//!   `read` the rest of the payload straight into the mapping;
//! - `hybrid`: `direct` only for payload rests of at least 64 KiB, else
//!   `copy` (small blocks stay on the buffered path);
//! - `populate`: as `copy`, after `madvise(MADV_POPULATE_WRITE)` of each
//!   piece's range when its first payload arrives (faults in bulk);
//! - `discard`: `read` into the buffer and drop it (the TCP ceiling of this
//!   receiver).
//!
//! Reports Gbit/s of payload (first byte to last byte stored), receiver and
//! sender thread CPU seconds per GiB (`RUSAGE_THREAD`) and checks every
//! stored byte afterwards. Variants alternate within each repetition;
//! medians of `--reps`.
//!
//! Run: `cargo run --release -p p2pe-bench --bin recv_path -- [--size-gib 1]`
// libc calls (rusage, signals, statfs, poll, mmap): the workspace denies unsafe_code.
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::io::{IoSlice, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context as _};
use clap::Parser;
use p2pe::wire::peer::{Decoded, Decoder, DecoderLimits, Message};

/// Command line.
#[derive(Parser, Debug)]
struct Args {
    /// Payload per run in GiB.
    #[arg(long, default_value_t = 1.0)]
    size_gib: f64,
    /// Block sizes (payload bytes per `piece` message), comma-separated.
    #[arg(long, default_value = "16384,1048576")]
    block_bytes: String,
    /// Variants, comma-separated: decoder,copy,pwrite,direct,hybrid,populate,discard.
    #[arg(
        long,
        default_value = "decoder,copy,pwrite,direct,hybrid,populate,discard"
    )]
    variants: String,
    /// Repetitions (medians are reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Destination file (recreated per run, removed afterwards).
    #[arg(long, default_value = "/tmp/p2pe-recv-path.bin")]
    file: PathBuf,
    /// Receive buffer in bytes (the runtime's default is 256 KiB).
    #[arg(long, default_value_t = 256 * 1024)]
    recv_buf_bytes: usize,
}

const GIB: f64 = (1u64 << 30) as f64;
/// Piece length of the stream: every block size used divides it.
const PIECE_LEN_BYTES: u64 = 4 << 20;
/// Sender source buffer: larger than the L3 cache, like a page-cache source.
const SRC_BYTES: usize = 64 << 20;

/// User + system CPU seconds of the calling thread.
fn thread_cpu_s() -> f64 {
    // SAFETY: an all-zero rusage is valid; getrusage only writes it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// The byte at stream offset `off` is `src[off % SRC_BYTES]`.
fn source() -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut v = vec![0u8; SRC_BYTES];
    for c in v.chunks_exact_mut(8) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        c.copy_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    v
}

/// Streams `total` payload bytes as `piece` messages of `block` bytes.
fn send(mut s: TcpStream, src: &[u8], total: u64, block: u64) -> anyhow::Result<f64> {
    let cpu0 = thread_cpu_s();
    let mut off = 0u64;
    let mut headers = vec![[0u8; 13]; 64];
    while off < total {
        let mut n = 0;
        let mut batch = 0u64;
        let mut spans = Vec::with_capacity(64);
        while off + batch < total && n < 64 && batch < (1 << 20) {
            let o = off + batch;
            let len = block.min(total - o);
            let h = &mut headers[n];
            h[0..4].copy_from_slice(&(9 + len as u32).to_be_bytes());
            h[4] = 7;
            h[5..9].copy_from_slice(&((o / PIECE_LEN_BYTES) as u32).to_be_bytes());
            h[9..13].copy_from_slice(&((o % PIECE_LEN_BYTES) as u32).to_be_bytes());
            let start = (o % SRC_BYTES as u64) as usize;
            spans.push((start, len as usize));
            batch += len;
            n += 1;
        }
        let mut iov = Vec::with_capacity(2 * n);
        for (h, &(start, len)) in headers.iter().zip(&spans) {
            iov.push(IoSlice::new(h));
            iov.push(IoSlice::new(&src[start..start + len]));
        }
        write_all_vectored(&mut s, &mut iov)?;
        off += batch;
    }
    Ok(thread_cpu_s() - cpu0)
}

fn write_all_vectored(s: &mut TcpStream, mut iov: &mut [IoSlice<'_>]) -> anyhow::Result<()> {
    while !iov.is_empty() {
        let n = s.write_vectored(iov)?;
        if n == 0 {
            bail!("peer closed");
        }
        IoSlice::advance_slices(&mut iov, n);
    }
    Ok(())
}

/// The destination: a fresh preallocated file and its shared mapping.
struct Dest {
    file: File,
    map: *mut u8,
    len: usize,
}

impl Dest {
    fn create(path: &PathBuf, len: usize) -> anyhow::Result<Dest> {
        let _ = std::fs::remove_file(path);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        // SAFETY: plain syscall on our descriptor.
        let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len as libc::off_t) };
        if rc != 0 {
            bail!("fallocate: errno {rc}");
        }
        // SAFETY: a fresh shared mapping of our file; checked below.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if map == libc::MAP_FAILED {
            bail!("mmap: {}", std::io::Error::last_os_error());
        }
        Ok(Dest {
            file,
            map: map.cast(),
            len,
        })
    }

    /// The mapped bytes `off..off + len` (bounds-checked).
    fn slice(&mut self, off: u64, len: usize) -> anyhow::Result<&mut [u8]> {
        let off = usize::try_from(off)?;
        if off.checked_add(len).is_none_or(|e| e > self.len) {
            bail!("block outside the file");
        }
        // SAFETY: in bounds (checked); only this thread touches the mapping.
        Ok(unsafe { std::slice::from_raw_parts_mut(self.map.add(off), len) })
    }
}

impl Drop for Dest {
    fn drop(&mut self) {
        // SAFETY: our mapping, no slices of it outlive `self`.
        unsafe { libc::munmap(self.map.cast(), self.len) };
    }
}

/// Stores payload bytes at stream offset `off` by `variant`.
fn store(dest: &mut Dest, variant: &str, off: u64, bytes: &[u8]) -> anyhow::Result<()> {
    if variant == "pwrite" {
        dest.file.write_all_at(bytes, off)?;
    } else {
        dest.slice(off, bytes.len())?.copy_from_slice(bytes);
    }
    Ok(())
}

/// Receives the stream by `variant`; returns payload bytes stored.
fn receive(
    mut s: TcpStream,
    dest: &mut Dest,
    variant: &str,
    buf_bytes: usize,
) -> anyhow::Result<u64> {
    let mut buf = vec![0u8; buf_bytes];
    let mut dec = Decoder::new(DecoderLimits::new(u32::MAX));
    dec.set_max_request_len(PIECE_LEN_BYTES as u32);
    let (mut stored, mut at) = (0u64, 0u64);
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(stored);
        }
        let data = &buf[..n];
        match variant {
            "discard" => stored += n as u64,
            "decoder" => {
                dec.extend(data);
                while let Some(m) = dec.next_message()? {
                    if let Message::Piece { index, begin, data } = m {
                        let off = u64::from(index.0) * PIECE_LEN_BYTES + u64::from(begin.0);
                        store(dest, variant, off, &data)?;
                        stored += data.len() as u64;
                    }
                }
            }
            _ => {
                let mut input = data;
                while let Some(d) = dec.decode_from(&mut input)? {
                    match d {
                        Decoded::PieceStart(h) => {
                            at = u64::from(h.piece.0) * PIECE_LEN_BYTES + u64::from(h.offset.0);
                            if variant == "populate" && h.offset.0 == 0 {
                                let piece = dest.slice(at, PIECE_LEN_BYTES as usize)?;
                                // SAFETY: advice on our own mapped range.
                                let rc = unsafe {
                                    libc::madvise(
                                        piece.as_mut_ptr().cast(),
                                        piece.len(),
                                        23, // MADV_POPULATE_WRITE (Linux 5.14)
                                    )
                                };
                                if rc != 0 {
                                    bail!("madvise: {}", std::io::Error::last_os_error());
                                }
                            }
                        }
                        Decoded::PiecePayload(c) => {
                            store(dest, variant, at, &c)?;
                            at += c.len() as u64;
                            stored += c.len() as u64;
                        }
                        Decoded::PieceEnd(_) | Decoded::Message(_) => {}
                    }
                    let direct = match variant {
                        "direct" => true,
                        "hybrid" => dec.payload_left_bytes().is_some_and(|l| l >= 64 * 1024),
                        _ => false,
                    };
                    if direct && input.is_empty() {
                        stored += recv_direct(&mut s, dest, &mut dec, &mut at)?;
                    }
                }
            }
        }
    }
}

/// `direct`: reads the rest of the current payload straight into the mapping.
fn recv_direct(
    s: &mut TcpStream,
    dest: &mut Dest,
    dec: &mut Decoder,
    at: &mut u64,
) -> anyhow::Result<u64> {
    let mut got = 0u64;
    while let Some(left) = dec.payload_left_bytes().filter(|&l| l > 0) {
        let dst = dest.slice(*at, left as usize)?;
        let n = s.read(dst)?;
        if n == 0 || !dec.skip_payload(n as u32) {
            bail!("stream ended inside a payload");
        }
        *at += n as u64;
        got += n as u64;
    }
    Ok(got)
}

/// One run: Gbit/s, receiver and sender CPU s/GiB.
fn run(args: &Args, src: &[u8], variant: &str, block: u64) -> anyhow::Result<[f64; 3]> {
    let total = (args.size_gib * GIB) as u64 / PIECE_LEN_BYTES * PIECE_LEN_BYTES;
    let mut dest = Dest::create(&args.file, total as usize)?;
    let l = TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    let (r, sender_cpu) = std::thread::scope(|sc| -> anyhow::Result<_> {
        let tx = sc.spawn(move || -> anyhow::Result<f64> {
            let s = TcpStream::connect(addr)?;
            s.set_nodelay(true)?;
            send(s, src, total, block)
        });
        let (s, _) = l.accept()?;
        let cpu0 = thread_cpu_s();
        let t0 = Instant::now();
        let stored = receive(s, &mut dest, variant, args.recv_buf_bytes)?;
        let secs = t0.elapsed().as_secs_f64();
        let cpu = thread_cpu_s() - cpu0;
        let sender = tx
            .join()
            .map_err(|_| anyhow::anyhow!("sender panicked"))??;
        let expected = if variant == "discard" {
            total + 13 * total.div_ceil(block)
        } else {
            total
        };
        if stored != expected {
            bail!("{variant}: stored {stored} of {total} bytes");
        }
        Ok(((secs, cpu), sender))
    })?;
    if variant != "discard" {
        check(&mut dest, src, total).with_context(|| format!("{variant} block {block}"))?;
    }
    drop(dest);
    std::fs::remove_file(&args.file)?;
    let gib = total as f64 / GIB;
    let ((secs, cpu), _) = (r, ());
    Ok([total as f64 * 8.0 / secs / 1e9, cpu / gib, sender_cpu / gib])
}

/// Every stored byte equals the source.
fn check(dest: &mut Dest, src: &[u8], total: u64) -> anyhow::Result<()> {
    let mut off = 0u64;
    while off < total {
        let len = (SRC_BYTES as u64).min(total - off) as usize;
        if dest.slice(off, len)? != &src[..len] {
            bail!(
                "stored bytes differ from the source at {off}..{}",
                off + len as u64
            );
        }
        off += len as u64;
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let src = source();
    let blocks: Vec<u64> = args
        .block_bytes
        .split(',')
        .map(|b| b.trim().parse())
        .collect::<Result<_, _>>()?;
    let variants: Vec<&str> = args.variants.split(',').map(str::trim).collect();
    for v in &variants {
        if ![
            "decoder", "copy", "pwrite", "direct", "hybrid", "populate", "discard",
        ]
        .contains(v)
        {
            bail!("unknown variant {v}");
        }
    }
    for &block in &blocks {
        if block == 0 || !PIECE_LEN_BYTES.is_multiple_of(block) {
            bail!("block size {block} must divide {PIECE_LEN_BYTES}");
        }
        let mut samples = vec![Vec::new(); variants.len()];
        for rep in 0..args.reps {
            for (i, v) in variants.iter().enumerate() {
                let s = run(&args, &src, v, block)?;
                eprintln!(
                    "rep {rep} block {block} {v}: {:.2} Gbit/s, recv {:.3} send {:.3} CPU s/GiB",
                    s[0], s[1], s[2]
                );
                samples[i].push(s);
            }
        }
        println!(
            "\nblock {block} bytes, {} GiB, {} reps (medians):\n",
            args.size_gib, args.reps
        );
        println!("| path | Gbit/s | receiver CPU s/GiB | sender CPU s/GiB |");
        println!("|---|---:|---:|---:|");
        for (v, s) in variants.iter().zip(&samples) {
            let col = |k: usize| median(s.iter().map(|x| x[k]).collect());
            println!("| {v} | {:.2} | {:.3} | {:.3} |", col(0), col(1), col(2));
        }
    }
    Ok(())
}
