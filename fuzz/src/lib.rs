//! A small fuzzing engine for edgeroom's decoders that runs on stable Rust inside `cargo test`.
//!
//! Each target gets a corpus of valid inputs (seeds). Every iteration feeds the target either
//! random bytes or a seed changed by a few mutations — bit flips, interesting bytes, inserted,
//! deleted, duplicated or spliced ranges, truncation, huge length prefixes (postcard varints and
//! little-endian `u32`s) and dictionary tokens — and checks two properties:
//! - **no panic**: a panic in wasm resets every object of the isolate;
//! - **bounded allocation**: the peak of live heap bytes while decoding stays under
//!   [`alloc_budget`] of the input's length, so a length prefix cannot make a decoder reserve
//!   memory the input does not back (the counting allocator below measures it).
//!
//! Targets may add their own oracle (decode → encode → decode round trips) and their own
//! structure-aware mutations before calling [`Fuzz::run`].
//!
//! The number of iterations and the seed come from `EDGEROOM_FUZZ_ITERS` (default
//! [`DEFAULT_ITERS`], the short run of `cargo test`) and `EDGEROOM_FUZZ_SEED` (default fixed, so
//! test runs are reproducible; `random` picks one from the clock). A failure names the target,
//! the seed, the iteration and the input, which is enough to replay it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// Iterations per target in a plain `cargo test` (a few seconds in all, debug build).
pub const DEFAULT_ITERS: u64 = 50_000;

/// Counts live heap bytes and their peak, for the allocation bound.
pub struct CountingAlloc;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; only counters are added.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            grew(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        new
    }
}

fn grew(bytes: usize) {
    let live = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(live, Ordering::Relaxed);
}

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

/// Most heap bytes a decoder may hold at once for an input of `len` bytes: a fixed 2 MiB (serde
/// pre-allocates at most 1 MiB for a sequence whose length prefix it cannot trust) plus 64 bytes
/// per input byte (decoded structures, error messages and copies).
pub fn alloc_budget(len: usize) -> usize {
    2 * 1024 * 1024 + 64 * len
}

/// Targets run one at a time so the allocation counters measure only the running one.
static SERIAL: Mutex<()> = Mutex::new(());

/// A splitmix64 generator: small, fast and good enough to pick mutations.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// True with probability 1/`n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    /// A random byte.
    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.byte()).collect()
    }

    /// One of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Byte strings that make decoders take unusual paths: huge postcard varints and
/// little-endian lengths, extreme numbers, JSON syntax.
const INTERESTING: &[&[u8]] = &[
    &[0xFF, 0xFF, 0xFF, 0xFF, 0x0F], // varint u32::MAX
    &[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], // varint u64::MAX
    &[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80], // overlong varint
    &[0xFF, 0xFF, 0xFF, 0x7F],       // varint 2^28 - 1
    &[0xFF, 0xFF, 0xFF, 0xFF],       // u32::MAX little-endian
    &[0x00, 0x00, 0x00, 0x80],
    &[0x00],
    &[0x01],
    &[0x7F],
    &[0x80],
    b"\"",
    b"\\",
    b"\\u0000",
    b"\\ud800",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"null",
    b"true",
    b"-",
    b"1e999",
    b"-1",
    b"18446744073709551616",
    b"9007199254740993",
    b"0.5",
    b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    b"{\"type\":",
    b"\xF0\x9F\x94\x91",
    b"\xFF\xFE",
    b"%",
    b"%00",
    b"%2F",
    b"/",
    b"..",
    b"*",
    b".",
    b"=",
    b"&",
    b"?",
    b"#",
];

/// Length prefixes that claim far more than any input holds (postcard varints, a `u32`).
const HUGE_LENGTHS: &[&[u8]] = &[
    &[0xFF, 0xFF, 0xFF, 0xFF, 0x0F],
    &[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
    &[0xFF, 0xFF, 0xFF, 0x7F],
    &[0xFF, 0xFF, 0xFF, 0xFF],
];

/// Changes `input` by one to four random mutations; `corpus` gives material to splice in.
pub fn mutate(rng: &mut Rng, input: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    for _ in 0..1 + rng.below(4) {
        let len = input.len();
        match rng.below(11) {
            0 if len > 0 => {
                let i = rng.below(len);
                input[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                input[i] = *rng.pick(&[0, 1, 0x7F, 0x80, 0xFF, b'"', b'{', b'0']);
            }
            2 if len > 0 => {
                let i = rng.below(len);
                input[i] = rng.byte();
            }
            3 => {
                let at = rng.below(len + 1);
                let count = 1 + rng.below(8);
                let extra = rng.bytes(count);
                input.splice(at..at, extra);
            }
            4 if len > 0 => {
                let start = rng.below(len);
                let end = (start + 1 + rng.below(16)).min(len);
                input.drain(start..end);
            }
            5 => input.truncate(rng.below(len + 1)),
            6 if len > 0 => {
                let start = rng.below(len);
                let end = (start + 1 + rng.below(32)).min(len);
                let copy = input[start..end].to_vec();
                let at = rng.below(len + 1);
                input.splice(at..at, copy);
            }
            7 | 8 => {
                let token = rng.pick(INTERESTING).to_vec();
                let at = rng.below(len + 1);
                if rng.one_in(2) && at < len {
                    let end = (at + token.len()).min(len);
                    input.splice(at..end, token);
                } else {
                    input.splice(at..at, token);
                }
            }
            9 if !corpus.is_empty() => {
                let other = rng.pick(corpus);
                if !other.is_empty() {
                    let start = rng.below(other.len());
                    let end = (start + 1 + rng.below(other.len() - start)).min(other.len());
                    let at = rng.below(len + 1);
                    input.splice(at..at, other[start..end].iter().copied());
                }
            }
            _ => {
                // Repeat a range many times: long inputs, deep nesting.
                if len > 0 {
                    let start = rng.below(len);
                    let end = (start + 1 + rng.below(4)).min(len);
                    let piece = input[start..end].to_vec();
                    let times = 1 + rng.below(200);
                    let at = rng.below(len + 1);
                    input.splice(at..at, piece.iter().copied().cycle().take(piece.len() * times));
                }
            }
        }
    }
}

/// Renders an input for a failure message: as text when it is UTF-8, else as hex.
pub fn show(input: &[u8]) -> String {
    match std::str::from_utf8(input) {
        Ok(text) => format!("text {text:?}"),
        Err(_) => format!("hex {}", input.iter().map(|b| format!("{b:02x}")).collect::<String>()),
    }
}

/// The settings of one run, from the environment.
#[derive(Debug, Clone, Copy)]
pub struct Fuzz {
    /// Iterations per target.
    pub iters: u64,
    /// The generator's seed.
    pub seed: u64,
}

impl Fuzz {
    /// Reads `EDGEROOM_FUZZ_ITERS` and `EDGEROOM_FUZZ_SEED` (a number, or `random`).
    pub fn from_env() -> Self {
        let iters =
            std::env::var("EDGEROOM_FUZZ_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_ITERS);
        let seed = match std::env::var("EDGEROOM_FUZZ_SEED").ok().as_deref() {
            Some("random") => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64),
            Some(value) => value.parse().unwrap_or(1),
            None => 0x0ED6_E500,
        };
        Self { iters, seed }
    }

    /// Runs `target` on `iters` inputs: random bytes (one in eight), else a mutated seed from
    /// `corpus`, or whatever `generate` makes of a mutated seed when it returns `Some` (for
    /// structure-aware mutations). Panics (failing the test) at the first input that makes
    /// `target` panic or allocate more than [`alloc_budget`].
    pub fn run(
        &self,
        name: &str,
        corpus: &[Vec<u8>],
        mut generate: impl FnMut(&mut Rng, &[Vec<u8>]) -> Option<Vec<u8>>,
        target: impl Fn(&[u8]),
    ) {
        let _serial = SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let seed = self.seed
            ^ name
                .bytes()
                .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        let mut rng = Rng::new(seed);
        let started = Instant::now();
        let mut worst = (0usize, 0usize);
        let mut check = |rng_state: Option<u64>, input: &[u8]| {
            let before = LIVE.load(Ordering::Relaxed);
            PEAK.store(before, Ordering::Relaxed);
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| target(input)));
            let peak = PEAK.load(Ordering::Relaxed).saturating_sub(before);
            let replay = match rng_state {
                Some(i) => format!("iteration {i} of EDGEROOM_FUZZ_SEED={}", self.seed),
                None => "a seed or the length sweep".to_owned(),
            };
            if let Err(cause) = outcome {
                let message = cause
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| cause.downcast_ref::<&str>().copied())
                    .unwrap_or("?");
                panic!("{name}: panic ({message}) on {replay}, input {}", show(input));
            }
            assert!(
                peak <= alloc_budget(input.len()),
                "{name}: {peak} bytes allocated for a {}-byte input ({replay}), input {}",
                input.len(),
                show(input)
            );
            if peak > worst.0 {
                worst = (peak, input.len());
            }
        };
        // First the seeds, then a sweep: a huge length prefix written over, and inserted at,
        // every position of every seed (up to its first 1 KiB).
        for input in corpus {
            check(None, input);
        }
        for input in corpus {
            for at in 0..=input.len().min(1024) {
                for token in HUGE_LENGTHS {
                    let mut inserted = input.clone();
                    inserted.splice(at..at, token.iter().copied());
                    check(None, &inserted);
                    let mut overwritten = input.clone();
                    let end = (at + token.len()).min(input.len());
                    overwritten.splice(at..end, token.iter().copied());
                    check(None, &overwritten);
                }
            }
        }
        for i in 0..self.iters {
            let input = if rng.one_in(8) || corpus.is_empty() {
                let max = if rng.one_in(4) { 4096 } else { 64 };
                let len = rng.below(max);
                rng.bytes(len)
            } else if let Some(generated) = generate(&mut rng, corpus) {
                generated
            } else {
                let mut input = rng.pick(corpus).clone();
                mutate(&mut rng, &mut input, corpus);
                input
            };
            check(Some(i), &input);
        }
        eprintln!(
            "fuzz {name}: {} inputs in {:.1?}, no panic; largest peak allocation {} bytes (for a {}-byte input)",
            self.iters,
            started.elapsed(),
            worst.0,
            worst.1
        );
    }
}

/// Decodes a snapshot file's header fields a structure-aware mutation keeps.
pub mod snapshot_file {
    /// Header length: magic, format, seq, created_ms, checksum, body length.
    pub const HEADER_LEN: usize = 4 + 2 + 8 + 8 + 4 + 4;

    /// `file` with its body replaced by `body` and the header's checksum and length updated, so
    /// the decoder gets past them to the body's postcard decoding.
    pub fn rewrap(file: &[u8], body: &[u8]) -> Vec<u8> {
        let mut out = file[..HEADER_LEN.min(file.len())].to_vec();
        out.resize(HEADER_LEN, 0);
        out[22..26].copy_from_slice(&crc32fast::hash(body).to_le_bytes());
        out[26..30].copy_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(body);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUICK: Fuzz = Fuzz { iters: 20, seed: 1 };

    #[test]
    #[should_panic(expected = "bytes allocated for a")]
    fn an_allocation_the_input_does_not_back_fails_the_run() {
        QUICK.run(
            "greedy",
            &[b"\x01\xff\xff\xff\xff\x0f".to_vec()],
            |_, _| None,
            |input| {
                // What a decoder trusting a length prefix would do.
                let claimed = input.len() * 64 * 1024 * 1024;
                std::hint::black_box(Vec::<u8>::with_capacity(claimed));
            },
        );
    }

    #[test]
    #[should_panic(expected = "panicking: panic (boom)")]
    fn a_panic_fails_the_run_with_the_input() {
        QUICK.run(
            "panicking",
            &[b"ok".to_vec()],
            |_, _| None,
            |input| {
                assert!(input != b"ok", "boom");
            },
        );
    }

    #[test]
    fn mutations_stay_reproducible() {
        let corpus = vec![b"{\"type\":\"ping\",\"nonce\":7}".to_vec()];
        let run = |seed| {
            let mut rng = Rng::new(seed);
            (0..100)
                .map(|_| {
                    let mut input = corpus[0].clone();
                    mutate(&mut rng, &mut input, &corpus);
                    input
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }
}
