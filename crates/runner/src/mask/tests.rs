//! Masking: examples, and properties over random text cut at random points.

use super::*;

/// Masks `text` fed in the given pieces.
fn masked(m: &mut Masker, pieces: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in pieces {
        m.feed(p, &mut out);
    }
    m.finish(&mut out);
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn values_are_replaced_wherever_they_are() {
    let mut m = Masker::new(["hunter2", "s3cr3t"]);
    let out = masked(&mut m, &[b"pw=hunter2 and s3cr3t, again hunter2\n"]);
    assert_eq!(out, b"pw=*** and ***, again ***\n");
}

#[test]
fn a_value_split_across_reads_is_caught() {
    let mut m = Masker::new(["hunter2"]);
    let out = masked(&mut m, &[b"pw=hun", b"te", b"r2\nnext hunte", b"x\n"]);
    assert_eq!(out, b"pw=***\nnext huntex\n");
}

#[test]
fn held_bytes_go_out_at_the_end_and_at_the_next_read() {
    let mut m = Masker::new(["hunter2"]);
    let mut out = Vec::new();
    m.feed(b"line\nhun", &mut out);
    assert_eq!(out, b"line\n", "a possible start is held back");
    m.feed(b"gry\n", &mut out);
    assert_eq!(out, b"line\nhungry\n");
    m.feed(b"hunt", &mut out);
    m.finish(&mut out);
    assert_eq!(out, b"line\nhungry\nhunt");
}

#[test]
fn multi_line_values_and_their_lines_are_masked() {
    let key = "-----BEGIN KEY-----\nAAAABBBB\n-----END KEY-----";
    let mut m = Masker::new([key]);
    let out = masked(&mut m, &[format!("key:\n{key}\n").as_bytes()]);
    assert_eq!(out, b"key:\n***\n");
    let out = masked(&mut m, &[b"only AAAABBBB here\n"]);
    assert_eq!(out, b"only *** here\n");
}

#[test]
fn short_values_are_not_masked_and_empty_is_a_pass_through() {
    let mut m = Masker::new(["ab", "", "x"]);
    assert!(m.is_empty());
    assert_eq!(masked(&mut m, &[b"ab x"]), b"ab x");
    let mut m = Masker::new(Vec::<String>::new());
    let mut out = Vec::new();
    m.feed(b"hun", &mut out);
    assert_eq!(out, b"hun", "nothing is held without secrets");
}

#[test]
fn the_longest_value_wins() {
    let mut m = Masker::new(["abc", "abcdef"]);
    assert_eq!(masked(&mut m, &[b"abc", b"def abc"]), b"*** ***");
}

/// A small deterministic generator (xorshift), so the property runs
/// without extra dependencies and a failure names its case.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
    fn bytes(&mut self, alphabet: &[u8], max: usize) -> Vec<u8> {
        let n = self.below(max + 1);
        (0..n)
            .map(|_| alphabet[self.below(alphabet.len())])
            .collect()
    }
}

/// Random text (a small alphabet, so secrets recur, and no `*`, which the
/// mask is made of) with secrets planted in it, cut at random points: the
/// pieces give the whole-text result, and no secret survives.
#[test]
fn any_cut_gives_the_whole_text_result_and_no_secret_survives() {
    for case in 0..3000u64 {
        let mut r = Rng(0x9E37_79B9_7F4A_7C15 ^ (case + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
        let secrets: Vec<String> = (0..r.below(4))
            .map(|_| {
                let mut s = r.bytes(b"abcd\n", 12);
                if s.is_empty() {
                    s.push(b'a');
                }
                String::from_utf8(s).unwrap()
            })
            .collect();
        let mut text = r.bytes(b"abcd\n \xc3\xa9", 300);
        for _ in 0..r.below(6) {
            if secrets.is_empty() {
                break;
            }
            let s = secrets[r.below(secrets.len())].as_bytes().to_vec();
            let at = r.below(text.len() + 1);
            text.splice(at..at, s);
        }
        let expected = masked(&mut Masker::new(&secrets), &[&text]);
        let mut points: Vec<usize> = (0..r.below(9)).map(|_| r.below(text.len() + 1)).collect();
        points.sort();
        let mut pieces: Vec<&[u8]> = Vec::new();
        let mut last = 0;
        for p in points {
            pieces.push(&text[last..p]);
            last = p;
        }
        pieces.push(&text[last..]);
        let got = masked(&mut Masker::new(&secrets), &pieces);
        let shown = String::from_utf8_lossy(&text);
        assert_eq!(got, expected, "case {case}: {secrets:?} in {shown:?}");
        for s in secrets.iter().filter(|s| s.len() >= MIN_SECRET_LEN) {
            assert!(
                !contains(&got, s.as_bytes()),
                "case {case}: {s:?} survived in {:?}",
                String::from_utf8_lossy(&got)
            );
        }
        if secrets.iter().all(|s| s.len() < MIN_SECRET_LEN) {
            assert_eq!(got, text, "case {case}: nothing to mask, nothing changed");
        }
    }
}

/// Through the real line pump: a pipe of 4 bytes cuts every value across
/// reads, and the lines sent hold `***` only.
#[tokio::test]
async fn the_line_pump_masks_values_cut_by_reads() {
    use tokio::io::AsyncWriteExt;
    let (sink, mut read) = crate::logs::LogSink::capture();
    let (mut w, r) = tokio::io::duplex(4);
    let writer = tokio::spawn(async move {
        w.write_all(b"pw=hunter2\nkey=line1-abc\nline2-def end\nhunte")
            .await
            .unwrap();
    });
    let masker = Masker::new(["hunter2", "line1-abc\nline2-def"]);
    crate::process::pump_masked(Some(r), "stdout", sink, masker).await;
    writer.await.unwrap();
    let lines: Vec<String> = read().into_iter().map(|(_, l)| l).collect();
    assert_eq!(lines, vec!["pw=***", "key=*** end", "hunte"]);
}
