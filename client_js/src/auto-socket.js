// AutoSocket: a WebSocket-shaped class for y-websocket's `WebSocketPolyfill` that uses a real
// WebSocket when it works and YLP/1 long-polling when it does not.
//
// Policy (per server, shared by every AutoSocket of the same class and server):
// * try a WebSocket first; when it fails to open (or closes with 1006 before its first message)
//   twice in a row, switch to long-polling. The second failure falls back inside the same
//   AutoSocket, so the provider just sees a connection that took a little longer to open;
// * while on long-polling, probe a WebSocket in the background every `probeIntervalMs` (the
//   first time after `firstProbeDelayMs`: a restarting server also fails WebSockets). Once a
//   probe receives its first server message, the long-poll socket closes (code 4000, "switching
//   to WebSocket": y-websocket reconnects at once) and the next AutoSocket the provider creates
//   adopts the already-open probe, replaying what it received. Yjs sync is idempotent and
//   state-based, so nothing needs to be paused or flushed across the switch;
// * after such a switch, `onSwitch` runs (createCollabProvider bumps the awareness clock there,
//   so that the server's removal of the old session's awareness state, sent at the same clock as
//   the re-announcement, cannot hide the user).
// * when long-polling cannot even reach the server, the next attempt starts over with WebSocket.

import { CLOSED, CLOSING, CONNECTING, OPEN, SocketEvents } from './events.js'
import { LongPollSocket } from './longpoll-socket.js'
import { parseSocketUrl } from './urls.js'

/** Close code an AutoSocket reports when it leaves long-polling for a WebSocket. */
export const SWITCH_CLOSE_CODE = 4000

export const AUTOSOCKET_DEFAULTS = Object.freeze({
  /** the WebSocket class (default: globalThis.WebSocket, looked up when a socket is created) */
  WebSocket: undefined,
  LongPollSocket,
  failuresBeforeFallback: 2,
  /** a WebSocket that has not opened after this long counts as failed */
  openTimeoutMs: 10_000,
  probeIntervalMs: 60_000,
  /** the first probe after long-polling opened comes sooner: WebSocket may have failed only
   * because the server was restarting */
  firstProbeDelayMs: 10_000,
  /** a probe that got no server message after this long is given up */
  probeTimeoutMs: 10_000,
  /** an adopted probe waits this long for the provider's next socket */
  handoverTimeoutMs: 10_000,
  /** called (with the AutoSocket) after it opened on a different transport than the last one */
  onSwitch: undefined,
  /** called with (transport, AutoSocket) whenever an AutoSocket opens */
  onTransport: undefined
})

const serverKey = (url) => {
  try {
    return parseSocketUrl(url).base
  } catch {
    return url
  }
}

export class AutoSocket extends SocketEvents {
  static options = AUTOSOCKET_DEFAULTS

  /** per server: { mode, wsFailures, handover, lastTransport } */
  static _servers = new Map()

  /**
   * A subclass with its own options and its own per-server state.
   * @param {Partial<typeof AUTOSOCKET_DEFAULTS>} options
   * @return {typeof AutoSocket}
   */
  static with (options) {
    const Base = this
    return class extends Base {
      static options = { ...Base.options, ...options }
      static _servers = new Map()
    }
  }

  /** What this class currently believes about a server (for tests and status displays). */
  static serverState (url) {
    return this._state(url)
  }

  static _state (url) {
    const key = serverKey(url)
    let state = this._servers.get(key)
    if (!state) {
      state = { mode: 'websocket', wsFailures: 0, handover: null, lastTransport: null }
      this._servers.set(key, state)
    }
    return state
  }

  constructor (url, protocols) {
    super()
    const cls = /** @type {typeof AutoSocket} */ (this.constructor)
    this._opts = cls.options
    this._state = cls._state(url)
    this.url = url
    this._protocols = protocols
    this.protocol = ''
    this.extensions = ''
    this.binaryType = 'arraybuffer'
    this.readyState = CONNECTING
    /** 'websocket' | 'polling' once chosen */
    this.transport = null
    this._inner = null
    this._probeTimer = null
    this._probe = null
    this._closing = false

    const handover = this._state.handover
    if (handover && handover.url === url && !handover.closed) {
      this._adopt(handover)
    } else if (this._state.mode === 'websocket' && this._WebSocket()) {
      this._startWebSocket()
    } else {
      this._startLongPoll()
    }
  }

  get bufferedAmount () {
    return this._inner?.bufferedAmount ?? 0
  }

  send (data) {
    if (this.readyState === CONNECTING) {
      throw new Error('InvalidStateError: AutoSocket.send() while still CONNECTING')
    }
    if (this.readyState !== OPEN) return
    this._inner.send(data)
  }

  close (code = 1000, reason = '') {
    if (this.readyState === CLOSING || this.readyState === CLOSED) return
    this._closing = true
    this._stopProbing()
    const inner = this._inner
    this.readyState = CLOSING
    if (inner && inner.readyState !== CLOSED && inner.readyState !== CLOSING) {
      try {
        inner.close(code, reason)
      } catch {
        inner.close()
      }
    } else {
      this._finish({ code, reason, wasClean: true })
    }
  }

  // --- internals -----------------------------------------------------------------------------

  _WebSocket () {
    return this._opts.WebSocket ?? globalThis.WebSocket
  }

  _opened (transport) {
    this.readyState = OPEN
    this._dispatch({ type: 'open' })
    const previous = this._state.lastTransport
    this._state.lastTransport = transport
    this._opts.onTransport?.(transport, this)
    if (previous !== null && previous !== transport && this.readyState === OPEN) {
      this._opts.onSwitch?.(this)
    }
  }

  _finish (event) {
    if (this.readyState === CLOSED) return
    this.readyState = CLOSED
    this._stopProbing()
    this._dispatch({ type: 'close', code: event.code, reason: event.reason ?? '', wasClean: !!event.wasClean })
  }

  _startWebSocket () {
    const WS = this._WebSocket()
    let ws
    try {
      ws = new WS(this.url, this._protocols)
    } catch (err) {
      this._webSocketFailed({ code: 1006, reason: String(err?.message ?? err) }, false)
      return
    }
    ws.binaryType = 'arraybuffer'
    this._inner = ws
    this.transport = 'websocket'
    let opened = false
    let received = false
    const openTimer = setTimeout(() => {
      if (opened || this._inner !== ws) return
      detach()
      try {
        ws.close()
      } catch {}
      this._webSocketFailed({ code: 1006, reason: 'WebSocket did not open in time' }, false)
    }, this._opts.openTimeoutMs)
    const detach = () => {
      clearTimeout(openTimer)
      ws.onopen = ws.onmessage = ws.onclose = null
      ws.onerror = () => {}
    }
    ws.onopen = () => {
      if (this._inner !== ws) return
      opened = true
      clearTimeout(openTimer)
      if (this._closing) return
      this._opened('websocket')
    }
    ws.onmessage = (event) => {
      if (this._inner !== ws) return
      if (!received) {
        received = true
        this._state.wsFailures = 0
        this._state.mode = 'websocket'
      }
      this._dispatch({ type: 'message', data: event.data })
    }
    ws.onerror = (event) => {
      if (this._inner !== ws || !opened) return // failures to open are handled in onclose
      this._dispatch({ type: 'error', error: event?.error, message: event?.message })
    }
    ws.onclose = (event) => {
      if (this._inner !== ws) return
      detach()
      if (!received && !this._closing && (!opened || event.code === 1006)) {
        this._webSocketFailed(event, opened)
        return
      }
      this._finish(event)
    }
  }

  /**
   * A WebSocket failed to open (or died before its first message). After enough failures in a
   * row, switch this server to long-polling; if the provider has not seen this socket open, carry
   * on with long-polling right here.
   */
  _webSocketFailed (event, opened) {
    const state = this._state
    state.wsFailures++
    if (state.wsFailures >= this._opts.failuresBeforeFallback) state.mode = 'polling'
    if (!opened && state.mode === 'polling' && !this._closing) {
      this._startLongPoll()
      return
    }
    if (!opened) this._dispatch({ type: 'error', message: event.reason || 'WebSocket failed' })
    this._finish({ code: event.code ?? 1006, reason: event.reason ?? '', wasClean: false })
  }

  _startLongPoll () {
    const LP = this._opts.LongPollSocket
    const lp = new LP(this.url, this._protocols)
    lp.binaryType = this.binaryType
    this._inner = lp
    this.transport = 'polling'
    let opened = false
    lp.onopen = () => {
      if (this._inner !== lp) return
      opened = true
      if (this._closing) return
      this._opened('polling')
      this._scheduleProbe(Math.min(this._opts.firstProbeDelayMs, this._opts.probeIntervalMs))
    }
    lp.onmessage = (event) => {
      if (this._inner === lp) this._dispatch({ type: 'message', data: event.data })
    }
    lp.onerror = (event) => {
      if (this._inner === lp) this._dispatch({ type: 'error', message: event.message })
    }
    lp.onclose = (event) => {
      if (this._inner !== lp) return
      if (!opened && event.code === 1006) {
        // the server is not reachable at all: next time start over with a WebSocket
        this._state.mode = 'websocket'
        this._state.wsFailures = 0
      }
      this._finish(event)
    }
  }

  _scheduleProbe (delay = this._opts.probeIntervalMs) {
    this._stopProbing()
    if (!this._WebSocket() || !(this._opts.probeIntervalMs > 0)) return
    this._probeTimer = setTimeout(() => this._runProbe(), delay)
  }

  _stopProbing () {
    clearTimeout(this._probeTimer)
    this._probeTimer = null
    const probe = this._probe
    this._probe = null
    if (probe) {
      clearTimeout(probe.timer)
      probe.ws.onopen = probe.ws.onmessage = probe.ws.onclose = null
      probe.ws.onerror = () => {}
      try {
        probe.ws.close()
      } catch {}
    }
  }

  _runProbe () {
    this._probeTimer = null
    if (this.readyState !== OPEN || this.transport !== 'polling') return
    let ws
    try {
      const WS = this._WebSocket()
      ws = new WS(this.url, this._protocols)
    } catch {
      this._scheduleProbe()
      return
    }
    ws.binaryType = 'arraybuffer'
    const probe = { ws, timer: null }
    this._probe = probe
    const giveUp = () => {
      if (this._probe !== probe) return
      this._scheduleProbe() // closes this probe and plans the next
    }
    probe.timer = setTimeout(giveUp, this._opts.probeTimeoutMs)
    ws.onerror = () => {}
    ws.onclose = giveUp
    ws.onmessage = (event) => {
      if (this._probe !== probe) return
      clearTimeout(probe.timer)
      this._probe = null
      this._switchToWebSocket(ws, event.data)
    }
  }

  /** A probe works: hand it over to the provider's next socket and end long-polling. */
  _switchToWebSocket (ws, firstMessage) {
    const state = this._state
    state.mode = 'websocket'
    state.wsFailures = 0
    const handover = { url: this.url, ws, buffered: [firstMessage], closed: null, timer: null }
    ws.onmessage = (event) => handover.buffered.push(event.data)
    ws.onclose = (event) => {
      handover.closed = event
    }
    handover.timer = setTimeout(() => {
      if (state.handover !== handover) return
      state.handover = null
      ws.onclose = null
      try {
        ws.close()
      } catch {}
    }, this._opts.handoverTimeoutMs)
    if (state.handover) this._dropHandover(state.handover)
    state.handover = handover
    const lp = this._inner
    this._inner = null
    lp.onopen = lp.onmessage = lp.onclose = lp.onerror = null
    lp.close(1000, 'switching to WebSocket')
    this._finish({ code: SWITCH_CLOSE_CODE, reason: 'switching to WebSocket', wasClean: true })
  }

  _dropHandover (handover) {
    clearTimeout(handover.timer)
    handover.ws.onmessage = handover.ws.onclose = null
    try {
      handover.ws.close()
    } catch {}
  }

  /** Take over the open probe WebSocket, replaying what it received. */
  _adopt (handover) {
    const state = this._state
    state.handover = null
    clearTimeout(handover.timer)
    const ws = handover.ws
    this._inner = ws
    this.transport = 'websocket'
    let pending = handover.buffered // delivered after 'open'
    ws.onmessage = (event) => {
      if (this._inner !== ws) return
      if (pending) pending.push(event.data)
      else this._dispatch({ type: 'message', data: event.data })
    }
    ws.onerror = (event) => {
      if (this._inner === ws) this._dispatch({ type: 'error', error: event?.error })
    }
    ws.onclose = (event) => {
      if (this._inner !== ws) return
      ws.onopen = ws.onmessage = ws.onclose = null
      ws.onerror = () => {}
      this._finish(event)
    }
    setTimeout(() => {
      if (this._inner !== ws || this.readyState !== CONNECTING) return
      if (handover.closed || ws.readyState !== 1) {
        ws.onclose?.(handover.closed ?? { code: 1006, reason: 'probe closed', wasClean: false })
        return
      }
      this.readyState = OPEN
      this._dispatch({ type: 'open' })
      const messages = pending
      pending = null
      for (const data of messages) {
        if (this.readyState !== OPEN) return
        this._dispatch({ type: 'message', data })
      }
      if (this.readyState !== OPEN) return
      this._state.lastTransport = 'websocket'
      this._opts.onTransport?.('websocket', this)
      this._opts.onSwitch?.(this)
    }, 0)
  }
}
