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
//! The io_uring variants (issue 12 item 3; one ring, the receiving thread
//! submits and reaps like a runtime worker, streaming decode as `copy`):
//!
//! - `uring-pwrite`: one `RECV` SQE at a time into the buffer, `pwrite(2)`
//!   payload slices from the thread (the node's path today);
//! - `uring-write`: `RECV` into one of two buffers, payload slices stored by
//!   io_uring `WRITE` SQEs submitted with the next `RECV` into the other
//!   buffer; a buffer is received into again only once its writes completed;
//! - `uring-fixed`: as `uring-pwrite`, but a `READ_FIXED` of the socket into a
//!   registered buffer (no per-call buffer import);
//! - `uring-pbuf`: one multishot `RECV` with a provided-buffer ring of 16 ×
//!   256 KiB buffers (the runtime's recv buffer size) (one SQE for the whole stream), `pwrite` of each
//!   completion's payload slices, then the buffer goes back to the ring.
//!
//! Reports Gbit/s of payload (first byte to last byte stored), receiver and
//! sender thread CPU seconds per GiB (`RUSAGE_THREAD`), the process's CPU but the
//! sender's (the receiver plus any io_uring worker threads) and checks every
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
    /// Variants, comma-separated: decoder,copy,pwrite,direct,hybrid,populate,discard,
    /// uring-pwrite,uring-write,uring-fixed,uring-pbuf.
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

/// User + system CPU seconds of the whole process (all threads, io_uring workers
/// included).
fn process_cpu_s() -> f64 {
    // SAFETY: an all-zero rusage is valid; getrusage only writes it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
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

/// One run: Gbit/s, receiver thread, sender thread and process-but-sender CPU s/GiB.
fn run(args: &Args, src: &[u8], variant: &str, block: u64) -> anyhow::Result<[f64; 4]> {
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
        let proc0 = process_cpu_s();
        let t0 = Instant::now();
        let stored = if variant.starts_with("uring-") {
            uring::receive(s, &dest.file, variant, args.recv_buf_bytes)?
        } else {
            receive(s, &mut dest, variant, args.recv_buf_bytes)?
        };
        let secs = t0.elapsed().as_secs_f64();
        let cpu = thread_cpu_s() - cpu0;
        let sender = tx
            .join()
            .map_err(|_| anyhow::anyhow!("sender panicked"))??;
        // Everything but the sender: the receiving thread and any io_uring worker
        // threads it used (`uring-write` may punt writes to them).
        let receiver_all = process_cpu_s() - proc0 - sender;
        let expected = if variant == "discard" {
            total + 13 * total.div_ceil(block)
        } else {
            total
        };
        if stored != expected {
            bail!("{variant}: stored {stored} of {total} bytes");
        }
        Ok(((secs, cpu, receiver_all), sender))
    })?;
    if variant != "discard" {
        check(&mut dest, src, total).with_context(|| format!("{variant} block {block}"))?;
    }
    drop(dest);
    std::fs::remove_file(&args.file)?;
    let gib = total as f64 / GIB;
    let (secs, cpu, receiver_all) = r;
    Ok([
        total as f64 * 8.0 / secs / 1e9,
        cpu / gib,
        sender_cpu / gib,
        receiver_all / gib,
    ])
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
            "decoder",
            "copy",
            "pwrite",
            "direct",
            "hybrid",
            "populate",
            "discard",
            "uring-pwrite",
            "uring-write",
            "uring-fixed",
            "uring-pbuf",
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
                    "rep {rep} block {block} {v}: {:.2} Gbit/s, recv {:.3} (with io workers {:.3}) send {:.3} CPU s/GiB",
                    s[0], s[1], s[3], s[2]
                );
                samples[i].push(s);
            }
        }
        println!(
            "\nblock {block} bytes, {} GiB, {} reps (medians):\n",
            args.size_gib, args.reps
        );
        println!(
            "| path | Gbit/s | receiver thread CPU s/GiB | receiver + io_uring workers CPU s/GiB | sender CPU s/GiB |"
        );
        println!("|---|---:|---:|---:|---:|");
        for (v, s) in variants.iter().zip(&samples) {
            let col = |k: usize| median(s.iter().map(|x| x[k]).collect());
            println!(
                "| {v} | {:.2} | {:.3} | {:.3} | {:.3} |",
                col(0),
                col(1),
                col(3),
                col(2)
            );
        }
    }
    Ok(())
}

/// The io_uring receive variants (see the module docs).
mod uring {
    use std::fs::File;
    use std::net::TcpStream;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;

    use anyhow::{bail, Context as _};
    use io_uring::{cqueue, opcode, types, IoUring};
    use p2pe::wire::peer::{Decoded, Decoder, DecoderLimits};

    use super::PIECE_LEN_BYTES;

    /// `user_data` of write completions (the low bit says which buffer).
    const WRITE_TAG: u64 = 1 << 32;
    /// Provided buffers of `uring-pbuf`: count and bytes each.
    const PBUF_COUNT: u16 = 16;
    const PBUF_BYTES: usize = 256 * 1024;
    /// The provided-buffer group id.
    const PBUF_GROUP: u16 = 7;

    /// A payload slice to store: file offset and bytes (pointing into a receive buffer).
    type Span = (u64, *const u8, usize);

    /// Decodes `data` and returns the payload spans, in order.
    fn decode(
        dec: &mut Decoder,
        at: &mut u64,
        mut data: &[u8],
        out: &mut Vec<Span>,
    ) -> anyhow::Result<()> {
        while let Some(d) = dec.decode_from(&mut data)? {
            match d {
                Decoded::PieceStart(h) => {
                    *at = u64::from(h.piece.0) * PIECE_LEN_BYTES + u64::from(h.offset.0);
                }
                Decoded::PiecePayload(c) => {
                    out.push((*at, c.as_ptr(), c.len()));
                    *at += c.len() as u64;
                }
                Decoded::PieceEnd(_) | Decoded::Message(_) => {}
            }
        }
        Ok(())
    }

    /// `pwrite`s the spans from this thread; returns the bytes stored.
    fn pwrite_spans(file: &File, spans: &[Span]) -> anyhow::Result<u64> {
        let mut n = 0;
        for &(off, ptr, len) in spans {
            // SAFETY: the span points into a receive buffer that is alive and not
            // written to until this returns.
            let bytes = unsafe { std::slice::from_raw_parts(ptr, len) };
            file.write_all_at(bytes, off)?;
            n += len as u64;
        }
        Ok(n)
    }

    /// Receives the whole stream by `variant`; returns payload bytes stored.
    pub(super) fn receive(
        s: TcpStream,
        file: &File,
        variant: &str,
        buf_bytes: usize,
    ) -> anyhow::Result<u64> {
        let mut ring = IoUring::new(256).context("io_uring setup")?;
        let mut dec = Decoder::new(DecoderLimits::new(u32::MAX));
        dec.set_max_request_len(PIECE_LEN_BYTES as u32);
        let sock = types::Fd(s.as_raw_fd());
        match variant {
            "uring-pwrite" | "uring-fixed" => {
                simple(&mut ring, sock, file, &mut dec, variant, buf_bytes)
            }
            "uring-write" => with_writes(&mut ring, sock, file, &mut dec, buf_bytes),
            "uring-pbuf" => provided(&mut ring, sock, file, &mut dec),
            _ => bail!("unknown io_uring variant {variant}"),
        }
    }

    /// Submits `e`, waits for its completion (none other is in flight) and returns its result.
    fn one(ring: &mut IoUring, e: io_uring::squeue::Entry) -> anyhow::Result<i32> {
        // SAFETY: the entry's buffers outlive the wait below, which reaps its completion.
        unsafe { ring.submission().push(&e) }.map_err(|_| anyhow::anyhow!("SQ full"))?;
        ring.submit_and_wait(1)?;
        let cqe = ring.completion().next().context("no completion")?;
        Ok(cqe.result())
    }

    fn simple(
        ring: &mut IoUring,
        sock: types::Fd,
        file: &File,
        dec: &mut Decoder,
        variant: &str,
        buf_bytes: usize,
    ) -> anyhow::Result<u64> {
        let mut buf = vec![0u8; buf_bytes];
        let fixed = variant == "uring-fixed";
        if fixed {
            let iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            // SAFETY: `buf` outlives its registration: it is unregistered below, before
            // `buf` drops.
            unsafe { ring.submitter().register_buffers(&[iov]) }?;
        }
        let (mut stored, mut at, mut spans) = (0u64, 0u64, Vec::new());
        let out = loop {
            let e = if fixed {
                opcode::ReadFixed::new(sock, buf.as_mut_ptr(), buf.len() as u32, 0)
                    .offset(u64::MAX)
                    .build()
            } else {
                opcode::Recv::new(sock, buf.as_mut_ptr(), buf.len() as u32).build()
            };
            let n = one(ring, e)?;
            if n < 0 {
                break Err(std::io::Error::from_raw_os_error(-n).into());
            }
            if n == 0 {
                break Ok(stored);
            }
            spans.clear();
            decode(dec, &mut at, &buf[..n as usize], &mut spans)?;
            stored += pwrite_spans(file, &spans)?;
        };
        if fixed {
            ring.submitter().unregister_buffers()?;
        }
        out
    }

    fn with_writes(
        ring: &mut IoUring,
        sock: types::Fd,
        file: &File,
        dec: &mut Decoder,
        buf_bytes: usize,
    ) -> anyhow::Result<u64> {
        let mut bufs = [vec![0u8; buf_bytes], vec![0u8; buf_bytes]];
        let mut pending = [0usize; 2];
        let fd = types::Fd(file.as_raw_fd());
        let (mut stored, mut at, mut spans) = (0u64, 0u64, Vec::new());
        let mut cur = 0usize;
        let mut recv_in_flight = false;
        let mut got: Option<i32> = None;
        loop {
            if !recv_in_flight && got.is_none() && pending[cur] == 0 {
                let b = &mut bufs[cur];
                let e = opcode::Recv::new(sock, b.as_mut_ptr(), b.len() as u32)
                    .build()
                    .user_data(cur as u64);
                // SAFETY: `bufs[cur]` is not touched until this recv completes.
                unsafe { ring.submission().push(&e) }.map_err(|_| anyhow::anyhow!("SQ full"))?;
                recv_in_flight = true;
            }
            if let Some(n) = got.take() {
                if n < 0 {
                    bail!(std::io::Error::from_raw_os_error(-n));
                }
                if n == 0 {
                    // Drain the writes still in flight.
                    while pending.iter().sum::<usize>() > 0 {
                        ring.submit_and_wait(1)?;
                        reap_writes(ring, &mut pending, &mut stored, &mut got)?;
                    }
                    return Ok(stored);
                }
                let filled = 1 - cur;
                spans.clear();
                decode(dec, &mut at, &bufs[filled][..n as usize], &mut spans)?;
                for &(off, ptr, len) in &spans {
                    let e = opcode::Write::new(fd, ptr, len as u32)
                        .offset(off)
                        .build()
                        .user_data(WRITE_TAG | filled as u64 | ((len as u64) << 33));
                    // SAFETY: `bufs[filled]` is not received into again while its writes
                    // are pending (`pending`).
                    while unsafe { ring.submission().push(&e) }.is_err() {
                        ring.submit()?;
                        reap_writes(ring, &mut pending, &mut stored, &mut got)?;
                    }
                    pending[filled] += 1;
                }
                continue;
            }
            ring.submit_and_wait(1)?;
            let was_recv = reap_writes(ring, &mut pending, &mut stored, &mut got)?;
            if was_recv {
                recv_in_flight = false;
                cur = 1 - cur;
            }
        }
    }

    /// Reaps completions: writes lower `pending` (a short write is an error); a recv's
    /// result goes to `got`. Returns whether a recv completed.
    fn reap_writes(
        ring: &mut IoUring,
        pending: &mut [usize; 2],
        stored: &mut u64,
        got: &mut Option<i32>,
    ) -> anyhow::Result<bool> {
        let mut recv = false;
        for cqe in ring.completion() {
            let ud = cqe.user_data();
            if ud & WRITE_TAG != 0 {
                let len = ud >> 33;
                if cqe.result() < 0 || cqe.result() as u64 != len {
                    bail!("io_uring write: result {} of {len} bytes", cqe.result());
                }
                pending[(ud & 1) as usize] -= 1;
                *stored += len;
            } else {
                *got = Some(cqe.result());
                recv = true;
            }
        }
        Ok(recv)
    }

    fn provided(
        ring: &mut IoUring,
        sock: types::Fd,
        file: &File,
        dec: &mut Decoder,
    ) -> anyhow::Result<u64> {
        // The ring of buffer descriptors must be page-aligned: a fresh anonymous mapping.
        let entries = usize::from(PBUF_COUNT);
        let ring_bytes = entries * std::mem::size_of::<types::BufRingEntry>();
        // SAFETY: an anonymous private mapping; checked below, unmapped at the end.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ring_bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            bail!("mmap: {}", std::io::Error::last_os_error());
        }
        let base = base.cast::<types::BufRingEntry>();
        let mut data = vec![0u8; entries * PBUF_BYTES];
        let data_base = data.as_mut_ptr();
        // SAFETY: the ring memory stays mapped until after unregistering below.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(base as u64, PBUF_COUNT, PBUF_GROUP, 0)
        }?;
        // SAFETY: `tail` points into the first entry's reserved field (the ring's tail).
        let tail = unsafe { types::BufRingEntry::tail(base) }.cast_mut();
        let mut t: u16 = 0;
        let give = |bid: u16, t: &mut u16| {
            let i = usize::from(*t) & (entries - 1);
            // SAFETY: `i` < entries, inside the mapping; the kernel reads entries only
            // up to the tail published below.
            let e = unsafe { &mut *base.add(i) };
            e.set_addr(data_base as u64 + u64::from(bid) * PBUF_BYTES as u64);
            e.set_len(PBUF_BYTES as u32);
            e.set_bid(bid);
            *t = t.wrapping_add(1);
            // SAFETY: the tail is a u16 in our mapping; a release store publishes the entry.
            unsafe { std::sync::atomic::AtomicU16::from_ptr(tail) }
                .store(*t, std::sync::atomic::Ordering::Release);
        };
        for bid in 0..PBUF_COUNT {
            give(bid, &mut t);
        }
        let (mut stored, mut at, mut spans) = (0u64, 0u64, Vec::new());
        let out = 'outer: loop {
            let e = opcode::RecvMulti::new(sock, PBUF_GROUP).build();
            // SAFETY: the provided buffers outlive the request (unregistered below).
            unsafe { ring.submission().push(&e) }.map_err(|_| anyhow::anyhow!("SQ full"))?;
            loop {
                ring.submit_and_wait(1)?;
                let cqes: Vec<(i32, u32)> =
                    ring.completion().map(|c| (c.result(), c.flags())).collect();
                let mut rearm = false;
                for (res, flags) in cqes {
                    if res == -libc::ENOBUFS {
                        rearm = true;
                        continue;
                    }
                    if res < 0 {
                        break 'outer Err(std::io::Error::from_raw_os_error(-res).into());
                    }
                    if res == 0 {
                        break 'outer Ok(stored);
                    }
                    let bid = cqueue::buffer_select(flags).context("no buffer id")?;
                    // SAFETY: the kernel filled `res` bytes of buffer `bid`, which is ours
                    // until given back below.
                    let bytes = unsafe {
                        std::slice::from_raw_parts(
                            data_base.add(usize::from(bid) * PBUF_BYTES),
                            res as usize,
                        )
                    };
                    spans.clear();
                    decode(dec, &mut at, bytes, &mut spans)?;
                    stored += pwrite_spans(file, &spans)?;
                    give(bid, &mut t);
                    if !cqueue::more(flags) {
                        rearm = true;
                    }
                }
                if rearm {
                    continue 'outer;
                }
            }
        };
        ring.submitter().unregister_buf_ring(PBUF_GROUP)?;
        // SAFETY: unregistered above; nothing refers to the ring memory any more.
        unsafe { libc::munmap(base.cast(), ring_bytes) };
        drop(data);
        out
    }
}
