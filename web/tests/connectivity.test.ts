import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { createPinia, setActivePinia } from 'pinia'
import { ApiClient } from '../src/api/client'
import { PROBE_FIRST_MS, useConnectivityStore } from '../src/stores/connectivity'

let serverUp = true
let status = 200
const fetchStub = vi.fn(async (_url: string, _init?: RequestInit) => {
  if (!serverUp) throw new TypeError('Failed to fetch')
  return new Response(JSON.stringify(status === 200 ? { status: 'ok' } : { error: { code: 'x', message: 'x' } }), {
    status,
  })
})

function setup() {
  const client = new ApiClient({ fetch: fetchStub as unknown as typeof fetch })
  const conn = useConnectivityStore()
  const recovered = vi.fn()
  conn.configure({ probe: () => client.health(), onRecovered: recovered })
  client.onReachability((ok, err) => conn.report(ok, err))
  return { client, conn, recovered }
}

beforeEach(() => {
  setActivePinia(createPinia())
  vi.useFakeTimers()
  serverUp = true
  status = 200
  fetchStub.mockClear()
})
afterEach(() => vi.useRealTimers())

describe('server reachability', () => {
  it('goes down on a network error and back up when /health answers', async () => {
    const { client, conn, recovered } = setup()
    expect(conn.reachable).toBe(true)
    serverUp = false
    await expect(client.listApps()).rejects.toMatchObject({ status: 0 })
    expect(conn.reachable).toBe(false)
    expect(conn.downSince).not.toBeNull()

    // still down at the first probe: stays down, probes again later
    await vi.advanceTimersByTimeAsync(PROBE_FIRST_MS)
    expect(fetchStub.mock.calls.at(-1)![0]).toBe('/health')
    expect(conn.reachable).toBe(false)
    expect(recovered).not.toHaveBeenCalled()

    serverUp = true
    await vi.advanceTimersByTimeAsync(10_000)
    expect(conn.reachable).toBe(true)
    expect(conn.downSince).toBeNull()
    expect(recovered).toHaveBeenCalledTimes(1)

    // no more probes once it is up
    const calls = fetchStub.mock.calls.length
    await vi.advanceTimersByTimeAsync(60_000)
    expect(fetchStub.mock.calls.length).toBe(calls)
  })

  it('any answer from the server counts as reachable, a gateway 502/503/504 does not', async () => {
    const { client, conn } = setup()
    status = 502
    await expect(client.listApps()).rejects.toMatchObject({ status: 502 })
    expect(conn.reachable).toBe(false)
    status = 404
    await expect(client.getApp('nope')).rejects.toMatchObject({ status: 404 })
    expect(conn.reachable).toBe(true)
  })

  it('"Retry now" probes at once', async () => {
    const { client, conn } = setup()
    serverUp = false
    await expect(client.listApps()).rejects.toBeTruthy()
    serverUp = true
    await conn.checkNow()
    expect(conn.reachable).toBe(true)
  })

  it('a heartbeat notices an outage when nothing else asks', async () => {
    const { conn } = setup()
    conn.startHeartbeat(30_000)
    serverUp = false
    await vi.advanceTimersByTimeAsync(29_000)
    expect(conn.reachable).toBe(true)
    await vi.advanceTimersByTimeAsync(1_000)
    expect(conn.reachable).toBe(false)
    serverUp = true
    await vi.advanceTimersByTimeAsync(PROBE_FIRST_MS)
    expect(conn.reachable).toBe(true)
  })
})
