// Small helpers for the client tests.
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'

import { decode } from '@msgpack/msgpack'

import { COLLAB } from './server.mjs'

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

export const waitFor = async (predicate, what, timeoutMs = 10_000) => {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await predicate()
    if (value) return value
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(20)
  }
}

let docCounter = 0
export const uniqueDoc = (prefix) => `${prefix}-${process.pid}-${Date.now().toString(36)}-${docCounter++}`

/**
 * A fetch that records every request and lets a test interfere: `before(entry)` may return
 * 'drop-request' (fail without reaching the server) or a URL to send the request elsewhere;
 * `after(entry)` (entry.status and entry.response set) may return true to lose the answer (the
 * server did the work, the client sees a network error), or a Response to hand over instead.
 */
export const recordingFetch = ({ before = () => null, after = () => false } = {}) => {
  const log = []
  const fetchImpl = async (url, init = {}) => {
    const entry = {
      method: init.method ?? 'GET',
      url: String(url),
      path: new URL(String(url)).pathname + new URL(String(url)).search,
      body: init.body ? new Uint8Array(init.body) : null,
      at: Date.now(),
      status: null,
      fate: 'ok'
    }
    log.push(entry)
    const action = before(entry)
    if (action === 'drop-request') {
      entry.fate = 'dropped-request'
      throw new TypeError('fetch failed (request dropped by the test)')
    }
    const target = typeof action === 'string' && action.startsWith('http') ? action : url
    let response
    try {
      response = await fetch(target, init)
    } catch (err) {
      entry.fate = 'network-error'
      throw err
    }
    entry.status = response.status
    const bytes = new Uint8Array(await response.arrayBuffer())
    entry.response = bytes
    const verdict = after(entry)
    if (verdict instanceof Response) {
      entry.fate = 'replaced-response'
      return verdict
    }
    if (verdict) {
      entry.fate = 'dropped-response'
      throw new TypeError('fetch failed (response dropped by the test)')
    }
    return new Response(response.status === 204 ? null : bytes, { status: response.status, headers: response.headers })
  }
  return { fetch: fetchImpl, log }
}

export const isPoll = (entry) => entry.method === 'GET' && /\/lp\/[^/]+\/poll\?/.test(entry.path)
export const isSend = (entry) => entry.method === 'POST' && /\/lp\/[^/]+\/send$/.test(entry.path)
export const isOpen = (entry) => entry.method === 'POST' && entry.path.startsWith('/lp/open')
export const isClose = (entry) => entry.method === 'POST' && /\/lp\/[^/]+\/close$/.test(entry.path)
export const ackOf = (entry) => Number(new URL(entry.url).searchParams.get('ack'))
export const decodeBody = (bytes) => decode(bytes)

const execFileP = promisify(execFile)
export const mintToken = async (key, doc, perm = 'w') => {
  const { stdout } = await execFileP(COLLAB, ['token', '--doc', doc, '--perm', perm, '--auth-key', key])
  return stdout.trim().split('\n').pop()
}

/** y-protocols message type / sync sub-type of a frame */
export const frameKind = (data) => {
  const bytes = new Uint8Array(data)
  if (bytes[0] === 0) return ['step1', 'step2', 'update'][bytes[1]] ?? 'sync?'
  return { 1: 'awareness', 2: 'auth', 3: 'query-awareness' }[bytes[0]] ?? 'unknown'
}
