//! Exact-value masking of secrets in a run's output, as CI systems do: every
//! occurrence of a secret's value in the bytes a script writes becomes
//! `***` before the bytes are split into log lines and sent.
//!
//! Design note. The invariant: no secret value (of at least
//! [`MIN_SECRET_LEN`] bytes) passes through a [`Masker`] intact, however the
//! writer's bytes are cut into reads, and nothing else is changed. It works
//! on the byte stream, not on lines, so a value split across two pipe reads
//! or spanning several lines is still caught: bytes that could be the start
//! of a secret are held back (at most the longest secret minus one byte)
//! until the next read or the end of the stream decides. Each line of a
//! multi-line value is also masked on its own, since scripts often print
//! one line of a key or certificate. The property tests in `mask/tests.rs`
//! cut random text holding secrets at random points and check that the
//! output never contains a secret and equals the whole-text replacement.
//!
//! The attempt builds one masker from the values its lease delivers (the
//! secrets the version declares) and hands it to
//! [`crate::process::pump_masked`] for stdout and stderr; with no secrets it
//! is empty, a pass-through.

/// Values shorter than this are not masked: masking `a` or `1` would
/// garble every line and reveal the value by where the stars appear.
pub const MIN_SECRET_LEN: usize = 3;

/// What a masked value is replaced by.
pub const MASK: &[u8] = b"***";

/// Masks secret values in a byte stream fed in arbitrary pieces.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    /// Longest first, so the longest match at a position wins.
    secrets: Vec<Vec<u8>>,
    /// Bytes held back because they may begin a secret.
    held: Vec<u8>,
}

impl Masker {
    /// A masker for these values; short and duplicate values are ignored.
    pub fn new<S: AsRef<str>>(values: impl IntoIterator<Item = S>) -> Masker {
        let mut secrets: Vec<Vec<u8>> = Vec::new();
        for v in values {
            let v = v.as_ref();
            secrets.push(v.as_bytes().to_vec());
            if v.contains('\n') {
                for line in v.lines() {
                    secrets.push(line.trim_end_matches('\r').as_bytes().to_vec());
                }
            }
        }
        secrets.retain(|s| s.len() >= MIN_SECRET_LEN);
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        Masker {
            secrets,
            held: Vec::new(),
        }
    }

    /// Whether there is nothing to mask.
    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }

    /// Appends the masked form of `input` to `out`, holding back a tail
    /// that may still turn into a secret.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        if self.secrets.is_empty() {
            out.extend_from_slice(input);
            return;
        }
        let mut buf = std::mem::take(&mut self.held);
        buf.extend_from_slice(input);
        let kept = self.scan(&buf, out, false);
        self.held = buf[kept..].to_vec();
    }

    /// Ends the stream: the held tail is no secret, so it goes out as is.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        let buf = std::mem::take(&mut self.held);
        let kept = self.scan(&buf, out, true);
        debug_assert_eq!(kept, buf.len());
    }

    /// Masks `buf` into `out`; returns where the held-back tail starts
    /// (`buf.len()` when nothing is held).
    fn scan(&self, buf: &[u8], out: &mut Vec<u8>, at_end: bool) -> usize {
        let mut i = 0;
        let mut plain = 0; // start of bytes not yet copied
        while i < buf.len() {
            let rest = &buf[i..];
            // More bytes could still make a (longer) secret start here:
            // decide on the next read, as the whole text would be decided.
            if !at_end
                && self
                    .secrets
                    .iter()
                    .any(|s| s.len() > rest.len() && s.starts_with(rest))
            {
                out.extend_from_slice(&buf[plain..i]);
                return i;
            }
            if let Some(s) = self.secrets.iter().find(|s| rest.starts_with(s)) {
                out.extend_from_slice(&buf[plain..i]);
                out.extend_from_slice(MASK);
                i += s.len();
                plain = i;
                continue;
            }
            i += 1;
        }
        out.extend_from_slice(&buf[plain..]);
        buf.len()
    }
}

#[cfg(test)]
mod tests;
