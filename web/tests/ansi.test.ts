import { describe, expect, it } from 'vitest'
import { ansiToHtml, hasControls, sanitizeAnsi, stripAnsi } from '../src/lib/ansi'

const E = '\x1b'

/** The HTML parsed by the DOM, so assertions see elements, not strings. */
function dom(html: string): HTMLElement {
  const div = document.createElement('div')
  div.innerHTML = html
  return div
}

describe('ANSI colours', () => {
  it('renders SGR colours, bold and underline as spans', () => {
    const el = dom(ansiToHtml(`${E}[31mred${E}[0m plain ${E}[1;4;32mbold green${E}[m`))
    expect(el.textContent).toBe('red plain bold green')
    const spans = [...el.querySelectorAll('span')]
    expect(spans.map((s) => [s.textContent, s.className])).toEqual([
      ['red', 'ansi-red-fg'],
      ['bold green', 'ansi-green-fg'],
    ])
    expect(spans[1].getAttribute('style')).toContain('font-weight:bold')
    expect(spans[1].getAttribute('style')).toContain('text-decoration:underline')
  })

  it('renders bright, 256-colour and truecolour foregrounds and backgrounds', () => {
    const el = dom(ansiToHtml(`${E}[91ma${E}[0m${E}[44mb${E}[0m${E}[38;5;208mc${E}[0m${E}[38;2;1;2;3md`))
    const spans = [...el.querySelectorAll('span')]
    expect(spans[0].className).toBe('ansi-bright-red-fg')
    expect(spans[1].className).toBe('ansi-blue-bg')
    expect(spans[2].getAttribute('style')).toContain('color:rgb(255,135,0)')
    expect(spans[3].getAttribute('style')).toContain('color:rgb(1,2,3)')
  })

  it('keeps each line on its own: a colour left open does not leak into the next line', () => {
    expect(dom(ansiToHtml(`${E}[31mopen`)).querySelector('span')!.className).toBe('ansi-red-fg')
    expect(ansiToHtml('next line')).toBe('next line')
  })

  it('escapes HTML: markup in a line stays text', () => {
    const line = `${E}[31m<script>alert(1)</script>${E}[0m <img src=x onerror=alert(2)> & "q" 'a'`
    const html = ansiToHtml(line)
    expect(html).not.toContain('<script')
    expect(html).not.toContain('<img')
    const el = dom(html)
    expect(el.querySelector('script')).toBeNull()
    expect(el.querySelector('img')).toBeNull()
    expect(el.textContent).toBe(`<script>alert(1)</script> <img src=x onerror=alert(2)> & "q" 'a'`)
    // the same for a plain line and a search hit
    expect(dom(ansiToHtml('\r<b>x</b>', 'b')).querySelector('b')).toBeNull()
  })

  it('drops OSC 8 links and window titles instead of making anchors', () => {
    const el = dom(ansiToHtml(`${E}]0;title${E}\\${E}]8;;https://example.com${E}\\link${E}]8;;${E}\\ done`))
    expect(el.querySelector('a')).toBeNull()
    expect(el.textContent).toBe('link done')
  })
})

describe('escape sequences that are not colours', () => {
  it('strips cursor moves, modes, charsets and stray controls', () => {
    expect(stripAnsi(`${E}[?25lhidden cursor${E}[?25h`)).toBe('hidden cursor')
    expect(stripAnsi(`${E}[2J${E}[Hclear${E}[3A${E}(Bx${E}7${E}8\x07\x00`)).toBe('clearx')
    expect(stripAnsi(`bell\x07 and del\x7f and c1\x9b`)).toBe('bell and del and c1')
    expect(stripAnsi(`tab\tkept`)).toBe('tab\tkept')
    // cut off at the end of the line
    expect(stripAnsi(`half ${E}[3`)).toBe('half ')
    expect(stripAnsi(`lone ${E}`)).toBe('lone ')
    expect(stripAnsi(`bad ${E}[\u00e9t\u00e9`)).toBe('bad été') // malformed: only ESC [ goes
    // an unterminated OSC swallows the rest, like a terminal
    expect(stripAnsi(`a${E}]0;title without end`)).toBe('a')
    // colon-form SGR is not understood by ansi_up: dropped, text kept
    expect(stripAnsi(`${E}[38:2::1:2:3mx`)).toBe('x')
  })

  it('resolves carriage-return progress bars to what the terminal shows last', () => {
    expect(stripAnsi('10%\r20%\r100%')).toBe('100%')
    expect(stripAnsi('downloading 10%\rdone')).toBe('doneloading 10%') // overwrite, as a terminal does
    expect(stripAnsi(`downloading 10%\r${E}[Kdone`)).toBe('done') // erase to end of line
    expect(stripAnsi(`${E}[2K\rok`)).toBe('ok')
    expect(stripAnsi(`abc${E}[1K${E}[1Gx`)).toBe('x  ') // erase to start, column 1
    expect(stripAnsi('ok\r')).toBe('ok') // a CRLF line's CR
    expect(stripAnsi('abc\b\bX')).toBe('aXc')
    expect(stripAnsi(`a${E}[3Cb${E}[2Dc`)).toBe('a  cb')
    expect(stripAnsi(`x${E}[999999999Gy`).length).toBeLessThanOrEqual(1 + 1024 + 1) // a huge move is bounded
  })

  it('keeps colours through redraws', () => {
    const s = sanitizeAnsi(`${E}[32m 10%${E}[0m\r${E}[32m100%${E}[0m`)
    expect(s.replace(/\x1b\[[\d;]*m/g, '')).toBe('100%')
    expect(dom(ansiToHtml(s)).querySelector('span')!.className).toBe('ansi-green-fg')
    // a partly overwritten line keeps the colours of what is left
    const el = dom(ansiToHtml(`${E}[31mred${E}[34mblue${E}[0m\rXY`))
    expect(el.textContent).toBe('XYdblue')
    expect([...el.querySelectorAll('span')].map((x) => [x.textContent, x.className])).toEqual([
      ['d', 'ansi-red-fg'],
      ['blue', 'ansi-blue-fg'],
    ])
  })

  it('leaves ordinary text alone (the fast path)', () => {
    expect(hasControls('plain text, with tab\t')).toBe(false)
    expect(hasControls(`${E}[1m`)).toBe(true)
    expect(hasControls('a\rb')).toBe(true)
    expect(sanitizeAnsi('plain')).toBe('plain')
    expect(stripAnsi('plain')).toBe('plain')
    expect(stripAnsi('emoji 🚀\r🎉')).toBe('🎉moji 🚀') // one cell per character, not per UTF-16 unit
  })
})

describe('search hits in coloured lines', () => {
  it('marks matches of the visible text, case-insensitively, keeping the colours', () => {
    const el = dom(ansiToHtml(`${E}[31mERROR${E}[0m: disk error`, 'error'))
    const marks = [...el.querySelectorAll('[data-testid="log-match"]')]
    expect(marks.map((m) => m.textContent)).toEqual(['ERROR', 'error'])
    expect(marks[0].parentElement!.className).toBe('ansi-red-fg')
    expect(el.textContent).toBe('ERROR: disk error')
  })

  it('a match across a colour change is one hit in pieces, never broken markup', () => {
    const el = dom(ansiToHtml(`ab${E}[31mcd${E}[0mef`, 'bcde'))
    expect(el.querySelectorAll('[data-testid="log-match"]').length).toBe(1)
    expect([...el.querySelectorAll('mark')].map((m) => m.textContent).join('')).toBe('bcde')
    expect(el.textContent).toBe('abcdef')
  })

  it('finds text that only exists after escapes are resolved', () => {
    // "50%" then overwritten by "done": the raw bytes contain "50%" but the screen does not
    expect(dom(ansiToHtml(`50%\r${E}[Kdone`, '50%')).querySelectorAll('mark').length).toBe(0)
    expect(dom(ansiToHtml(`${E}[1mdo${E}[0mne`, 'done')).querySelectorAll('mark').length).toBe(2)
  })
})
