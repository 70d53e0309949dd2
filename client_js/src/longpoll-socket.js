// LongPollSocket: a WebSocket-shaped class speaking YLP/1 (y-websocket frames over HTTP
// long-polling, msgpack batches, sequence numbers and cumulative acks both ways). Pass it as
// y-websocket's `WebSocketPolyfill`; all of the provider's logic (sync, awareness, backoff,
// close-code policy, watchdog) then runs unchanged on top of it.
//
//   POST /lp/open?doc=<id>            -> {sid, poll_timeout_ms, session_ttl_ms, max_post_bytes}
//   GET  /lp/<sid>/poll?ack=<A>       -> msgpack [A+1, [frame, ...]] (held while empty)
//   POST /lp/<sid>/send  [useq, [frame, ...]] -> msgpack [last_useq] (409 [last_useq]: gap)
//   POST /lp/<sid>/close              -> 204
//
// Down-stream frames are processed strictly in order, and `ack` only advances past processed
// frames, so a lost poll response is simply polled again. Up-stream frames stay queued until
// the server acknowledges them, and one POST at a time carries every unacked frame, so a retried
// POST is de-duplicated by the server. Errors the server reports as {"error", "code"} end the
// socket with that close code, which y-websocket's 4400-4499 "do not retry" rule understands.

import { decode, encode } from '@msgpack/msgpack'

import { CLOSED, CLOSING, CONNECTING, OPEN, SocketEvents } from './events.js'
import { parseSocketUrl } from './urls.js'

const MSGPACK = 'application/msgpack'

export const LONGPOLL_DEFAULTS = Object.freeze({
  /** fetch implementation (tests wrap it to lose responses) */
  fetch: undefined,
  /** client-side timeout of one request; a poll also waits at least poll_timeout_ms + 10 s */
  requestTimeoutMs: 35_000,
  /** retry after a network error: at once, then retryBaseMs * 2^n, capped */
  retryBaseMs: 250,
  retryMaxMs: 5_000,
  /** give up (close 1006) when requests keep failing for this long (default: session_ttl_ms) */
  giveUpAfterMs: undefined,
  /** how long close() waits for unacknowledged frames to be delivered */
  closeFlushMs: 3_000,
  maxFramesPerPost: 256,
  /** extra request headers */
  headers: undefined
})

/** Close code for an HTTP status that came without a {"code"} in its body. */
const codeForStatus = (status) => {
  if (status === 400) return 4400
  if (status === 401) return 4401
  if (status === 403) return 4403
  if (status === 410) return 1001
  if (status === 413) return 4413
  if (status === 429 || status === 503) return 1013
  if (status === 404) return 1002 // no YLP/1 endpoint on that server: transient for y-websocket
  return status >= 500 ? 1011 : 1002
}

class NetworkError extends Error {}

const toBytes = (data) => {
  if (typeof data === 'string') return new TextEncoder().encode(data)
  if (data instanceof ArrayBuffer) return new Uint8Array(data.slice(0))
  if (ArrayBuffer.isView(data)) {
    return new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength))
  }
  throw new TypeError('LongPollSocket.send: expected a string, ArrayBuffer or typed array')
}

const toArrayBuffer = (bytes) =>
  bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)

export class LongPollSocket extends SocketEvents {
  /** @type {typeof LONGPOLL_DEFAULTS} */
  static options = LONGPOLL_DEFAULTS

  /**
   * A subclass with other options, e.g. `LongPollSocket.with({ fetch: myFetch })`.
   * @param {Partial<typeof LONGPOLL_DEFAULTS>} options
   * @return {typeof LongPollSocket}
   */
  static with (options) {
    const Base = this
    return class extends Base {
      static options = { ...Base.options, ...options }
    }
  }

  /**
   * @param {string} url  ws(s)://HOST[/prefix]/ws/<doc>?token=...
   * @param {string | string[]} [protocols]  ignored (kept for the WebSocket signature)
   */
  constructor (url, protocols) {
    super()
    const opts = /** @type {any} */ (this.constructor).options
    this._opts = opts
    this._fetch = opts.fetch ?? globalThis.fetch.bind(globalThis)
    this.url = url
    this.protocol = ''
    this.extensions = ''
    this.binaryType = 'arraybuffer'
    this.bufferedAmount = 0
    this.readyState = CONNECTING
    /** which transport this socket is (for status displays) */
    this.transport = 'polling'
    /** @type {string | null} */
    this.sid = null
    this._ack = 0 // last processed down-stream dseq
    this._nextUseq = 1
    /** @type {{useq: number, frame: Uint8Array}[]} */
    this._unacked = []
    this._sending = false
    this._flushQueued = false
    this._failures = { poll: 0, send: 0 }
    this._failingSince = { poll: 0, send: 0 }
    /** @type {Set<AbortController>} */
    this._inflight = new Set()
    /** @type {AbortController | null} */
    this._pollAbort = null
    this._pollTimeoutMs = 25_000
    this._sessionTtlMs = 45_000
    this._maxPostBytes = 1 << 20
    this._closeWanted = null // {code, reason} once close() was called
    this._closeWaiters = []
    try {
      this._target = parseSocketUrl(url)
    } catch (err) {
      this._target = null
      setTimeout(() => this._finish(4400, err.message, false), 0)
      return
    }
    this._open()
  }

  // --- WebSocket API --------------------------------------------------------------------------

  /** @param {string | ArrayBuffer | ArrayBufferView} data */
  send (data) {
    if (this.readyState === CONNECTING) {
      throw new Error("InvalidStateError: LongPollSocket.send() while still CONNECTING")
    }
    if (this.readyState !== OPEN) return
    const frame = toBytes(data)
    this._unacked.push({ useq: this._nextUseq++, frame })
    this.bufferedAmount += frame.byteLength
    this._queueFlush()
  }

  /**
   * Deliver what is still unacknowledged (for up to closeFlushMs), then end the session.
   * @param {number} [code]
   * @param {string} [reason]
   */
  close (code = 1000, reason = '') {
    if (this.readyState === CLOSING || this.readyState === CLOSED) return
    this._closeWanted = { code, reason }
    const wasOpen = this.readyState === OPEN
    this.readyState = CLOSING
    this._pollAbort?.abort() // the held poll; a POST in flight is left to finish
    if (!wasOpen) return // _open() sees CLOSING and finishes
    this._closeWhenFlushed()
  }

  // --- internals -----------------------------------------------------------------------------

  get _live () {
    return this.readyState === OPEN
  }

  _headers (extra) {
    const headers = { ...(this._opts.headers ?? {}), ...extra }
    if (this._target?.token) headers.Authorization = `Bearer ${this._target.token}`
    return headers
  }

  /**
   * One HTTP request with a client-side timeout. Resolves to {status, bytes, type} for every
   * HTTP answer, rejects with NetworkError when no answer arrived.
   */
  async _request (method, path, { body, contentType, timeoutMs, keepalive, poll, untracked } = {}) {
    const controller = new AbortController()
    if (!untracked) this._inflight.add(controller) // untracked: not aborted when the socket ends
    if (poll) this._pollAbort = controller
    const timer = setTimeout(() => controller.abort(), timeoutMs ?? this._opts.requestTimeoutMs)
    try {
      const response = await this._fetch(this._target.base + path, {
        method,
        body,
        headers: this._headers(contentType ? { 'Content-Type': contentType } : {}),
        signal: controller.signal,
        cache: 'no-store',
        keepalive
      })
      const bytes = new Uint8Array(await response.arrayBuffer())
      return { status: response.status, bytes, type: response.headers.get('content-type') ?? '' }
    } catch (err) {
      throw new NetworkError(controller.signal.aborted ? 'request timed out' : String(err?.message ?? err))
    } finally {
      clearTimeout(timer)
      this._inflight.delete(controller)
      if (this._pollAbort === controller) this._pollAbort = null
    }
  }

  _abortAll () {
    for (const controller of this._inflight) controller.abort()
  }

  /** {code, reason} from an error answer: the body's {"error", "code"} or the status. */
  _errorOf (res) {
    let info = null
    if (res.type.includes('json')) {
      try {
        info = JSON.parse(new TextDecoder().decode(res.bytes))
      } catch {}
    }
    const code = Number.isInteger(info?.code) ? info.code : codeForStatus(res.status)
    const reason = typeof info?.error === 'string' ? info.error : `HTTP ${res.status}`
    return { code, reason, explicit: Number.isInteger(info?.code) }
  }

  /** A proxy or server hiccup worth retrying (no close code from the server itself). */
  _retryable (res) {
    return [408, 502, 503, 504].includes(res.status) && !this._errorOf(res).explicit
  }

  async _open () {
    const { doc } = this._target
    let res
    try {
      res = await this._request('POST', `/lp/open?doc=${encodeURIComponent(doc)}`)
    } catch (err) {
      if (this.readyState === CLOSING) this._finish(this._closeWanted.code, this._closeWanted.reason, true)
      else this._finish(1006, `long-polling unavailable: ${err.message}`, false)
      return
    }
    let session = null
    if (res.status === 200) {
      try {
        session = JSON.parse(new TextDecoder().decode(res.bytes))
      } catch {}
      if (typeof session?.sid !== 'string') {
        this._finish(1002, 'malformed /lp/open answer', false)
        return
      }
    }
    if (this.readyState === CLOSING) {
      // close() was called while opening: end the session we may have got and stop
      if (session) {
        this.sid = session.sid
        await this._sendClose()
      }
      this._finish(this._closeWanted.code, this._closeWanted.reason, true)
      return
    }
    if (this.readyState !== CONNECTING) return
    if (!session) {
      const { code, reason } = this._errorOf(res)
      this._finish(code, reason, false)
      return
    }
    this.sid = session.sid
    if (session.poll_timeout_ms > 0) this._pollTimeoutMs = session.poll_timeout_ms
    if (session.session_ttl_ms > 0) this._sessionTtlMs = session.session_ttl_ms
    if (session.max_post_bytes > 0) this._maxPostBytes = session.max_post_bytes
    this.readyState = OPEN
    this._dispatch({ type: 'open' })
    if (this.readyState === OPEN) this._pollLoop()
  }

  async _pollLoop () {
    const timeoutMs = Math.max(this._opts.requestTimeoutMs, this._pollTimeoutMs + 10_000)
    while (this._live) {
      let res
      try {
        res = await this._request('GET', `/lp/${this.sid}/poll?ack=${this._ack}`, { timeoutMs, poll: true })
      } catch (err) {
        if (!this._live || !(await this._backoff('poll', err.message))) return
        continue
      }
      if (!this._live) return
      if (res.status === 200) {
        this._recovered('poll')
        let first, frames
        try {
          ;[first, frames] = /** @type {any} */ (decode(res.bytes))
        } catch {}
        if (first !== this._ack + 1 || !Array.isArray(frames)) {
          this._fail(1002, 'malformed poll answer', true)
          return
        }
        for (let i = 0; i < frames.length; i++) {
          const dseq = first + i
          if (dseq <= this._ack) continue // delivered before (cannot happen with a sane server)
          const frame = frames[i]
          if (!(frame instanceof Uint8Array)) {
            this._fail(1002, 'malformed poll answer', true)
            return
          }
          this._ack = dseq
          this._dispatch({ type: 'message', data: this._messageData(frame) })
          if (!this._live) return
        }
      } else if (res.status === 409 || this._retryable(res)) {
        // 409: a newer poll of this session superseded this one; retry, frames are retained
        if (!(await this._backoff('poll', `HTTP ${res.status}`))) return
      } else {
        const { code, reason } = this._errorOf(res)
        this._fail(code, reason, res.status !== 410)
        return
      }
    }
  }

  _messageData (frame) {
    if (this.binaryType === 'blob' && typeof Blob !== 'undefined') return new Blob([frame])
    return toArrayBuffer(frame)
  }

  _queueFlush () {
    if (this._sending || this._flushQueued) return
    this._flushQueued = true
    queueMicrotask(() => {
      this._flushQueued = false
      this._flush()
    })
  }

  /** Take as many unacked frames as one POST may carry (at least one). */
  _batch () {
    const out = []
    let size = 16
    for (const item of this._unacked) {
      if (out.length >= this._opts.maxFramesPerPost) break
      if (out.length && size + item.frame.byteLength + 5 > this._maxPostBytes) break
      out.push(item)
      size += item.frame.byteLength + 5
    }
    return out
  }

  async _flush () {
    if (this._sending) return
    this._sending = true
    try {
      while (this._unacked.length && this.sid !== null &&
             (this.readyState === OPEN || this.readyState === CLOSING)) {
        const batch = this._batch()
        const body = encode([batch[0].useq, batch.map((item) => item.frame)])
        let res
        try {
          res = await this._request('POST', `/lp/${this.sid}/send`, { body, contentType: MSGPACK })
        } catch (err) {
          if (this.readyState === CLOSED) return
          if (!(await this._backoff('send', err.message))) return
          continue
        }
        if (this.readyState === CLOSED) return
        if (res.status === 200 || (res.status === 409 && res.type.includes('msgpack'))) {
          let last
          try {
            ;[last] = /** @type {any} */ (decode(res.bytes))
          } catch {}
          if (!Number.isInteger(last) || last < this._unacked[0].useq - 1 || last >= this._nextUseq) {
            this._fail(1011, 'long-poll session lost track of sent frames', true)
            return
          }
          this._recovered('send')
          this._acked(last)
          // 409 (gap): the loop re-sends from the first frame still unacknowledged
        } else if (res.status === 409 || this._retryable(res)) {
          if (!(await this._backoff('send', `HTTP ${res.status}`))) return
        } else {
          const { code, reason } = this._errorOf(res)
          this._fail(code, reason, res.status !== 410)
          return
        }
      }
    } finally {
      this._sending = false
      if (this.readyState === OPEN && this._unacked.length) this._queueFlush()
      if (this.readyState === CLOSING && !this._unacked.length) this._wakeCloseWaiters()
    }
  }

  _acked (last) {
    while (this._unacked.length && this._unacked[0].useq <= last) {
      this.bufferedAmount -= this._unacked.shift().frame.byteLength
    }
  }

  _recovered (kind) {
    this._failures[kind] = 0
    this._failingSince[kind] = 0
  }

  /**
   * Wait before retrying after a failed request: at once the first time, then
   * retryBase * 2^n capped at retryMax. Resolves false when the socket is done or requests have
   * failed for longer than the session could survive (then the socket closes with 1006).
   */
  async _backoff (kind, why) {
    const n = ++this._failures[kind]
    const now = Date.now()
    if (!this._failingSince[kind]) this._failingSince[kind] = now
    const giveUp = this._opts.giveUpAfterMs ?? this._sessionTtlMs
    if (now - this._failingSince[kind] > giveUp) {
      this._fail(1006, `long-poll ${kind} failing for ${Math.round((now - this._failingSince[kind]) / 1000)} s: ${why}`)
      return false
    }
    const delay = n === 1 ? 0 : Math.min(this._opts.retryBaseMs * 2 ** (n - 2), this._opts.retryMaxMs)
    if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay))
    return this.readyState === OPEN || (kind === 'send' && this.readyState === CLOSING)
  }

  _wakeCloseWaiters () {
    const waiters = this._closeWaiters
    this._closeWaiters = []
    for (const wake of waiters) wake()
  }

  async _closeWhenFlushed () {
    if (this._unacked.length) {
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, this._opts.closeFlushMs)
        this._closeWaiters.push(() => {
          clearTimeout(timer)
          resolve()
        })
        this._queueFlush()
      })
    }
    if (this.readyState !== CLOSING) return
    await this._sendClose()
    this._finish(this._closeWanted.code, this._closeWanted.reason, true)
  }

  async _sendClose () {
    if (this.sid === null) return
    try {
      await this._request('POST', `/lp/${this.sid}/close`, { timeoutMs: 5_000, keepalive: true, untracked: true })
    } catch {}
  }

  /** The session ended abnormally (server close code, protocol error, network). */
  _fail (code, reason, tellServer = false) {
    if (this.readyState === CLOSED) return
    if (tellServer && this.sid !== null) this._sendClose()
    this._finish(code, reason, false)
  }

  _finish (code, reason, wasClean) {
    if (this.readyState === CLOSED) return
    this.readyState = CLOSED
    this._abortAll()
    this._wakeCloseWaiters()
    this._unacked = []
    this.bufferedAmount = 0
    if (!wasClean) this._dispatch({ type: 'error', message: reason })
    this._dispatch({ type: 'close', code, reason, wasClean })
  }
}
