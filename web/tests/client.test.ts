import { afterEach, describe, expect, it, vi } from 'vitest'
import { ApiClient, ApiError } from '../src/api/client'

function jsonResponse(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } })
}

function clientWith(fetchImpl: (url: string, init: RequestInit) => Promise<Response>) {
  const fetchMock = vi.fn(fetchImpl)
  const client = new ApiClient({ fetch: fetchMock as unknown as typeof fetch })
  return { client, fetchMock }
}

async function caught(p: Promise<unknown>): Promise<ApiError> {
  try {
    await p
  } catch (e) {
    expect(e).toBeInstanceOf(ApiError)
    return e as ApiError
  }
  throw new Error('expected a rejection')
}

afterEach(() => vi.unstubAllGlobals())

describe('ApiClient error mapping', () => {
  it('maps the error envelope to ApiError(status, code, message)', async () => {
    const { client } = clientWith(async () =>
      jsonResponse(400, { error: { code: 'invalid_input', message: '/name: expected string' } }),
    )
    const e = await caught(client.createRun('hello', { input: { name: 1 } }))
    expect(e.status).toBe(400)
    expect(e.code).toBe('invalid_input')
    expect(e.message).toBe('/name: expected string')
  })

  it('maps a non-JSON body to http_<status> with the text as message', async () => {
    const { client } = clientWith(async () => new Response('<html>Bad Gateway</html>', { status: 502, statusText: 'Bad Gateway' }))
    const e = await caught(client.listApps())
    expect(e.status).toBe(502)
    expect(e.code).toBe('http_502')
    expect(e.message).toContain('Bad Gateway')
  })

  it('maps an empty non-JSON body to the status text', async () => {
    const { client } = clientWith(async () => new Response(null, { status: 500, statusText: 'Internal Server Error' }))
    const e = await caught(client.listApps())
    expect(e.code).toBe('http_500')
    expect(e.message).toBe('Internal Server Error')
  })

  it('maps JSON without an envelope like any non-envelope body', async () => {
    const { client } = clientWith(async () => jsonResponse(503, { status: 'down' }))
    const e = await caught(client.listApps())
    expect(e.status).toBe(503)
    expect(e.code).toBe('http_503')
  })

  it('maps a network failure to status 0 network_error', async () => {
    const { client } = clientWith(async () => {
      throw new TypeError('Failed to fetch')
    })
    const e = await caught(client.listApps())
    expect(e.status).toBe(0)
    expect(e.code).toBe('network_error')
    expect(e.message).toContain('Failed to fetch')
  })

  it('lets an abort through unchanged', async () => {
    const { client } = clientWith(async () => {
      throw new DOMException('aborted', 'AbortError')
    })
    await expect(client.listApps()).rejects.toMatchObject({ name: 'AbortError' })
  })

  it('rejects a 2xx body that is not JSON', async () => {
    const { client } = clientWith(async () => new Response('not json', { status: 200 }))
    const e = await caught(client.listApps())
    expect(e.code).toBe('invalid_response')
  })

  it('resolves 204 to undefined', async () => {
    const { client } = clientWith(async () => new Response(null, { status: 204 }))
    await expect(client.revokeToken(3)).resolves.toBeUndefined()
  })

  it('uses globalThis.fetch when no fetch was injected', async () => {
    const f = vi.fn(async () => jsonResponse(200, { apps: [] }))
    vi.stubGlobal('fetch', f)
    const client = new ApiClient()
    await expect(client.listApps()).resolves.toEqual([])
    expect(f).toHaveBeenCalledOnce()
  })
})

describe('ApiClient auth', () => {
  it('sends the session token as a bearer token', async () => {
    const { client, fetchMock } = clientWith(async () => jsonResponse(200, { apps: [] }))
    client.setToken('tok-1')
    await client.listApps()
    const init = fetchMock.mock.calls[0][1]
    expect((init.headers as Record<string, string>).Authorization).toBe('Bearer tok-1')
  })

  it('on 401 clears the token and calls the unauthorized handler', async () => {
    const { client } = clientWith(async () => jsonResponse(401, { error: { code: 'unauthorized', message: 'bad token' } }))
    const handler = vi.fn()
    client.onUnauthorized(handler)
    client.setToken('revoked')
    const e = await caught(client.listApps())
    expect(e.status).toBe(401)
    expect(e.code).toBe('unauthorized')
    expect(handler).toHaveBeenCalledOnce()
    expect(client.getToken()).toBeNull()
  })

  it('a 401 for an explicit token (validation) does not end the session', async () => {
    const { client, fetchMock } = clientWith(async () => jsonResponse(401, { error: { code: 'unauthorized', message: 'no' } }))
    const handler = vi.fn()
    client.onUnauthorized(handler)
    client.setToken('current')
    await caught(client.me('pasted'))
    expect((fetchMock.mock.calls[0][1].headers as Record<string, string>).Authorization).toBe('Bearer pasted')
    expect(handler).not.toHaveBeenCalled()
    expect(client.getToken()).toBe('current')
  })

  it('login sends no Authorization header and a 401 there is just an error', async () => {
    const { client, fetchMock } = clientWith(async () => jsonResponse(401, { error: { code: 'unauthorized', message: 'x' } }))
    const handler = vi.fn()
    client.onUnauthorized(handler)
    await caught(client.login('acme', 'wrong'))
    const init = fetchMock.mock.calls[0][1]
    expect((init.headers as Record<string, string>).Authorization).toBeUndefined()
    expect(JSON.parse(init.body as string)).toEqual({ slug: 'acme', password: 'wrong' })
    expect(handler).not.toHaveBeenCalled()
  })

  it('403 does not end the session', async () => {
    const { client } = clientWith(async () => jsonResponse(403, { error: { code: 'forbidden', message: 'admins only' } }))
    const handler = vi.fn()
    client.onUnauthorized(handler)
    client.setToken('member')
    const e = await caught(client.listRunners())
    expect(e.code).toBe('forbidden')
    expect(handler).not.toHaveBeenCalled()
    expect(client.getToken()).toBe('member')
  })
})

describe('ApiClient requests', () => {
  it('builds list queries, skipping empty filters', async () => {
    const { client, fetchMock } = clientWith(async () => jsonResponse(200, { runs: [] }))
    await client.listRuns({ status: 'running', app: '', limit: 25, offset: 50 })
    expect(fetchMock.mock.calls[0][0]).toBe('/api/v1/runs?status=running&limit=25&offset=50')
  })

  it('uploads versions as multipart without forcing a content type', async () => {
    const { client, fetchMock } = clientWith(async () => jsonResponse(201, { version_no: 1 }))
    const form = new FormData()
    form.append('entrypoint', 'main.py')
    await client.uploadVersion('hello', form)
    const [url, init] = fetchMock.mock.calls[0]
    expect(url).toBe('/api/v1/apps/hello/versions')
    expect(init.method).toBe('POST')
    expect(init.body).toBe(form)
    expect((init.headers as Record<string, string>)['Content-Type']).toBeUndefined()
  })
})
