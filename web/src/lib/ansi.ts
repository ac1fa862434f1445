// ANSI escape sequences in log lines: a PTY (and many tools on pipes) colour their output and
// redraw progress bars with `\r` and cursor sequences. The runner stores the bytes as-is; the
// viewer shows colours and the final state of a redrawn line, never the raw escape bytes.
//
// Two steps: `sanitizeAnsi` replays a line like a one-line terminal would (carriage return,
// backspace, erase-in-line, column moves) and keeps only complete SGR (colour/bold/underline)
// sequences; ansi_up then turns those into HTML, escaping the text (log text is untrusted).
import { AnsiUp } from 'ansi_up'

/** Anything a terminal would interpret: C0 controls but tab, DEL and the C1 range. */
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f-\x9f]/

/** Whether a line needs the terminal treatment (false for ordinary text: the fast path). */
export function hasControls(line: string): boolean {
  return CONTROL.test(line)
}

// Sticky (matched at lastIndex). A CSI sequence: parameter bytes, intermediate bytes, a final byte.
const CSI = /\x1b\[([\x30-\x3f]*)([\x20-\x2f]*)([\x40-\x7e])/y
const CSI_CUT = /\x1b\[[\x20-\x3f]*$/y
// OSC, DCS, SOS, PM, APC: a string ended by BEL or ST (ESC \); unterminated, it runs to the end.
const STRING_SEQ = /\x1b[\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\|$)/y
// Any other escape: intermediates and a final byte (ESC ( B, ESC 7, ESC =, ...).
const OTHER_ESC = /\x1b[\x20-\x2f]*[\x30-\x7e]/y

function matchAt(re: RegExp, s: string, at: number): RegExpExecArray | null {
  re.lastIndex = at
  return re.exec(s)
}

interface Cell {
  ch: string
  /** The SGR sequences in force for this character, since the line's last reset. */
  sgr: string
}

/** How far past the text a cursor move may go (ESC[99999999G must not pad a line forever). */
const MAX_PAD = 1024

const numArg = (params: string, dflt: number) => {
  const n = parseInt(params, 10)
  return Number.isNaN(n) || n < 1 ? dflt : n
}

/**
 * The line as a terminal would leave it, with only complete SGR sequences kept: `\r` returns
 * to column 0 and later text overwrites earlier text, backspace steps back, `ESC[K` erases,
 * `ESC[nG/C/D` move the cursor; every other control, CSI, OSC or escape is dropped.
 */
export function sanitizeAnsi(line: string): string {
  if (!hasControls(line)) return line
  const cells: Cell[] = []
  let cursor = 0
  let sgr = '' // SGR sequences in force
  const put = (ch: string) => {
    while (cells.length < cursor) cells.push({ ch: ' ', sgr: '' })
    cells[cursor++] = { ch, sgr }
  }
  let i = 0
  while (i < line.length) {
    const c = line[i]
    if (c === '\x1b') {
      const csi = matchAt(CSI, line, i)
      if (csi) {
        i += csi[0].length
        const [, params, inter, final] = csi
        if (final === 'm' && !inter && /^[\d;]*$/.test(params)) {
          // A reset clears what was in force; anything else adds to it.
          sgr = params === '' || /^0*$/.test(params) ? '' : sgr + csi[0]
        } else if (!inter && /^\d*$/.test(params)) {
          if (final === 'K') {
            const mode = parseInt(params || '0', 10)
            if (mode === 0) cells.length = Math.min(cells.length, cursor)
            else if (mode === 1) for (let k = 0; k <= cursor && k < cells.length; k++) cells[k] = { ch: ' ', sgr: '' }
            else if (mode === 2) cells.length = 0
          } else if (final === 'G') cursor = Math.min(numArg(params, 1) - 1, cells.length + MAX_PAD)
          else if (final === 'C') cursor = Math.min(cursor + numArg(params, 1), cells.length + MAX_PAD)
          else if (final === 'D') cursor = Math.max(0, cursor - numArg(params, 1))
        }
        continue
      }
      if (line[i + 1] === '[') {
        // A CSI cut off at the end of the line goes with it; a malformed one loses its ESC [.
        i = matchAt(CSI_CUT, line, i) ? line.length : i + 2
        continue
      }
      const other = matchAt(STRING_SEQ, line, i) ?? matchAt(OTHER_ESC, line, i)
      i += other ? other[0].length : 1
      continue
    }
    if (c === '\r') cursor = 0
    else if (c === '\b') cursor = Math.max(0, cursor - 1)
    else if (c === '\t' || !CONTROL.test(c)) {
      // Keep surrogate pairs (emoji) in one cell.
      const cp = line.codePointAt(i)!
      const ch = String.fromCodePoint(cp)
      put(ch)
      i += ch.length
      continue
    }
    i += 1
  }
  let out = ''
  let prev = ''
  for (const cell of cells) {
    if (cell.sgr !== prev) {
      // Usually the state only grew since the previous cell: emit just the new sequences.
      out += prev && cell.sgr.startsWith(prev) ? cell.sgr.slice(prev.length) : (prev ? '\x1b[0m' : '') + cell.sgr
    }
    out += cell.ch
    prev = cell.sgr
  }
  return prev ? out + '\x1b[0m' : out
}

const SGR_G = /\x1b\[[\d;]*m/g
const SGR_Y = /\x1b\[[\d;]*m/y

/** The visible text of a line: what search matches and a copy or download holds. */
export function stripAnsi(line: string): string {
  return hasControls(line) ? sanitizeAnsi(line).replace(SGR_G, '') : line
}

// Marks put around search hits before ansi_up runs; a sanitized line holds no C0 control,
// so they cannot come from the log text. Replaced by <mark> after escaping.
const OPEN = '\x01' // first piece of a hit
const OPEN_MORE = '\x02' // a hit goes on after a colour change
const CLOSE = '\x03'

/** Inserts hit marks around every case-insensitive occurrence of q in the visible text. */
function markHits(sanitized: string, q: string): string {
  const visible = sanitized.replace(SGR_G, '')
  const lower = visible.toLowerCase()
  const needle = q.toLowerCase()
  const starts = new Map<number, number>() // visible index → end
  for (let at = lower.indexOf(needle); at >= 0 && needle; at = lower.indexOf(needle, at + needle.length)) {
    starts.set(at, at + needle.length)
  }
  if (!starts.size) return sanitized
  let out = ''
  let vi = 0 // visible index
  let end = -1 // end of the hit we are in, -1 outside
  let open = false
  let first = false
  let i = 0
  while (i < sanitized.length) {
    if (sanitized[i] === '\x1b') {
      const m = matchAt(SGR_Y, sanitized, i)! // only SGR is left
      // A mark never spans a colour change: ansi_up puts each colour run in its own span.
      if (open) out += CLOSE
      open = false
      out += m[0]
      i += m[0].length
      continue
    }
    if (end === vi) {
      if (open) out += CLOSE
      open = false
      end = -1
    }
    if (end < 0 && starts.has(vi)) {
      end = starts.get(vi)!
      first = true
    }
    if (end >= 0 && !open) {
      out += first ? OPEN : OPEN_MORE
      open = true
      first = false
    }
    out += sanitized[i]
    vi += 1
    i += 1
  }
  if (open) out += CLOSE
  return out
}

const au = new AnsiUp()
au.use_classes = true // the 16 colours come from the viewer's CSS, tuned for its dark background
au.url_allowlist = {} // no links (OSC 8 is dropped before anyway)

/**
 * HTML for one log line: colours as `<span class="ansi-red-fg">`, text escaped, redraws
 * resolved; with q, every match of q in the visible text in `<mark data-testid="log-match">`.
 * Each line renders alone: colours do not leak from one line into the next.
 */
export function ansiToHtml(line: string, q = ''): string {
  let s = sanitizeAnsi(line)
  if (q) s = markHits(s, q)
  // A leading reset: ansi_up keeps its colour state from the previous call.
  const html = au.ansi_to_html('\x1b[0m' + s)
  return html
    .replaceAll(OPEN, '<mark data-testid="log-match">')
    .replaceAll(OPEN_MORE, '<mark class="more">')
    .replaceAll(CLOSE, '</mark>')
}
