// createCollabProvider: the stock y-websocket 3.1 WebsocketProvider over our transports, with a
// status a UI can show and jittered reconnects.

import { WebsocketProvider } from 'y-websocket'
import { Awareness } from 'y-protocols/awareness'

import { AutoSocket, SWITCH_CLOSE_CODE } from './auto-socket.js'
import { LongPollSocket } from './longpoll-socket.js'
import { toSocketBase } from './urls.js'

const CLOSE_REASONS = {
  1000: 'closed',
  1001: 'server going away',
  1002: 'protocol error',
  1006: 'connection lost',
  1011: 'server error',
  1013: 'server busy',
  4400: 'bad request',
  4401: 'not signed in, or the access token expired',
  4403: 'access denied',
  4404: 'document not found (deleted?)',
  4413: 'message too large'
}

/** A sentence for a close code and the server's reason. */
export const describeClose = (code, reason) => {
  const known = CLOSE_REASONS[code] ?? (code >= 4400 && code < 4500 ? 'refused by the server' : 'disconnected')
  return reason && reason !== known ? `${known}: ${reason}` : known
}

export const isPermanentClose = (code) => code >= 4400 && code < 4500

/**
 * @typedef {object} CollabStatus
 * @property {'connecting'|'connected'|'synced'|'offline'|'closed'} state
 * @property {'websocket'|'polling'|null} transport  of the current (or last) connection
 * @property {boolean} synced
 * @property {number} [code]          close code (offline, closed)
 * @property {string} [reason]        readable reason (offline, closed)
 * @property {number} [retryInMs]     when offline: delay before the next attempt
 */

/**
 * Connect a Y.Doc to a Collab server.
 *
 * @param {string} url  server: http(s)://host[:port], ws(s)://host[:port][/ws], or relative ('/')
 * @param {string} doc  document id
 * @param {import('yjs').Doc} ydoc
 * @param {object} [opts]
 * @param {string} [opts.token]  access token (sent as ?token= / Authorization: Bearer)
 * @param {'auto'|'websocket'|'polling'} [opts.transport]  default 'auto'
 * @param {{name: string, color?: string, colorLight?: string}} [opts.user]  awareness `user` field
 * @param {Awareness} [opts.awareness]
 * @param {Record<string,string>} [opts.params]  more URL parameters
 * @param {boolean} [opts.connect]  default true
 * @param {boolean} [opts.disableBc]  no BroadcastChannel between tabs (default false)
 * @param {number} [opts.maxBackoffTime]  reconnect delay cap in ms (default 5000), jittered
 * @param {any} [opts.WebSocket]  WebSocket class (default globalThis.WebSocket)
 * @param {any} [opts.fetch]  fetch for long-polling (default globalThis.fetch)
 * @param {number} [opts.probeIntervalMs]  auto: how often to try WebSocket again (default 60 s)
 * @param {(status: CollabStatus) => void} [opts.onStatus]
 * @return {WebsocketProvider & {collabStatus: CollabStatus, transport: string}}
 */
export const createCollabProvider = (url, doc, ydoc, opts = {}) => {
  const {
    token,
    transport = 'auto',
    user,
    awareness: givenAwareness,
    params = {},
    connect = true,
    disableBc = false,
    maxBackoffTime = 5_000,
    WebSocket: WebSocketImpl,
    fetch: fetchImpl,
    probeIntervalMs,
    onStatus
  } = opts
  if (!['auto', 'websocket', 'polling'].includes(transport)) {
    throw new TypeError(`transport must be 'auto', 'websocket' or 'polling', not ${transport}`)
  }
  const awareness = givenAwareness ?? new Awareness(ydoc)
  if (user) awareness.setLocalStateField('user', user)

  const LP = fetchImpl ? LongPollSocket.with({ fetch: fetchImpl }) : LongPollSocket
  let Polyfill
  if (transport === 'websocket') {
    Polyfill = WebSocketImpl ?? globalThis.WebSocket
    if (!Polyfill) throw new Error('no WebSocket class available: pass opts.WebSocket')
  } else if (transport === 'polling') {
    Polyfill = LP
  } else {
    Polyfill = AutoSocket.with({
      WebSocket: WebSocketImpl,
      LongPollSocket: LP,
      ...(probeIntervalMs !== undefined ? { probeIntervalMs } : {}),
      // the same clock as before the switch could lose against the old session's removal
      onSwitch: () => {
        const state = awareness.getLocalState()
        if (state !== null) awareness.setLocalState(state)
      }
    })
  }

  const provider = /** @type {any} */ (new WebsocketProvider(toSocketBase(url), doc, ydoc, {
    connect: false,
    awareness,
    params: token ? { ...params, token } : { ...params },
    WebSocketPolyfill: Polyfill,
    disableBc,
    maxBackoffTime
  }))

  const transportOf = (ws) => ws?.transport ?? (transport === 'polling' ? 'polling' : 'websocket')

  /** @type {CollabStatus} */
  let status = { state: 'connecting', transport: null, synced: false }
  const setStatus = (next) => {
    status = { ...next, synced: next.state === 'synced' }
    provider.emit('collab-status', [status])
    onStatus?.(status)
  }

  provider.on('status', ({ status: s }) => {
    if (s === 'connecting') {
      setStatus({ state: 'connecting', transport: status.transport })
    } else if (s === 'connected') {
      setStatus({ state: provider.synced ? 'synced' : 'connected', transport: transportOf(provider.ws) })
    }
  })
  provider.on('sync', (synced) => {
    if (synced && provider.wsconnected) {
      setStatus({ state: 'synced', transport: transportOf(provider.ws) })
    }
  })
  // y-websocket computes the next delay as min(2^n * 100 ms, maxBackoffTime) right after
  // emitting 'connection-close'; lowering maxBackoffTime here jitters that delay ("equal
  // jitter": between half and all of the exponential step), so clients that lost the same server
  // do not come back in lockstep.
  provider.on('connection-close', (event) => {
    const n = provider.wsUnsuccessfulReconnects + 1
    const step = Math.min(2 ** n * 100, maxBackoffTime)
    let delay = Math.round(step / 2 + Math.random() * (step / 2))
    if (event?.code === SWITCH_CLOSE_CODE) delay = 0
    provider.maxBackoffTime = delay
    if (event && isPermanentClose(event.code)) return // 'closed' follows
    if (!provider.shouldConnect) {
      setStatus({ state: 'closed', transport: status.transport, code: 1000, reason: 'disconnected' })
      return
    }
    const code = event?.code ?? 1006
    setStatus({
      state: event?.code === SWITCH_CLOSE_CODE ? 'connecting' : 'offline',
      transport: transportOf(provider.ws) ?? status.transport,
      code,
      reason: event ? describeClose(code, event.reason) : 'no message from the server for 30 s',
      retryInMs: delay
    })
  })
  provider.on('closed', ({ code, reason }) => {
    setStatus({ state: 'closed', transport: status.transport, code, reason: describeClose(code, reason) })
  })

  // come back quickly when the browser says the network is back
  const onOnline = () => {
    if (provider.shouldConnect && !provider.wsconnected && provider.ws === null) {
      provider.connect()
    }
  }
  const hasWindow = typeof window !== 'undefined' && typeof window.addEventListener === 'function'
  if (hasWindow) window.addEventListener('online', onOnline)
  const destroy = provider.destroy.bind(provider)
  provider.destroy = () => {
    if (hasWindow) window.removeEventListener('online', onOnline)
    destroy()
    // an Awareness we created has its own timer; y-websocket leaves it to the owner
    if (!givenAwareness) awareness.destroy()
  }

  Object.defineProperty(provider, 'collabStatus', { get: () => status, enumerable: true })
  Object.defineProperty(provider, 'transport', {
    get: () => (provider.ws ? transportOf(provider.ws) : status.transport),
    enumerable: true
  })
  if (connect) provider.connect()
  return provider
}
