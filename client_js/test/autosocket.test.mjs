// AutoSocket (WebSocket first, long-polling fallback, probe back) and createCollabProvider's
// status and reconnect policy, against a real Collab server.
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'

import WebSocket from 'ws'
import * as Y from 'yjs'

import {
  AutoSocket, LongPollSocket, createCollabProvider, describeClose, parseSocketUrl, toSocketBase
} from '../src/index.js'
import { startServer } from './helpers/server.mjs'
import { isClose, isOpen, recordingFetch, sleep, uniqueDoc, waitFor } from './helpers/util.mjs'

let server
before(async () => {
  server = await startServer()
})
after(async () => {
  await server?.stop()
})

const providers = []
const track = (provider) => {
  providers.push(provider)
  return provider
}
after(() => providers.forEach((p) => p.destroy()))

/** A WebSocket class that fails to connect (like a proxy that blocks upgrades) while `blocked`. */
const flakyWebSocket = () => {
  const control = { blocked: true, attempts: 0 }
  class FlakyWebSocket extends WebSocket {
    constructor (url, protocols) {
      control.attempts++
      super(control.blocked ? url.replace(/^ws:\/\/[^/]+/, 'ws://127.0.0.1:9') : url, protocols)
    }
  }
  return { FlakyWebSocket, control }
}

const wsPeer = (doc, name = 'peer') => track(createCollabProvider(server.url, doc, new Y.Doc(), {
  transport: 'websocket', WebSocket, disableBc: true, user: { name, color: '#3cb44b' }
}))

describe('AutoSocket', () => {
  test('uses a WebSocket when it works (no long-polling requests)', async () => {
    const rec = recordingFetch()
    const provider = track(createCollabProvider(server.url, uniqueDoc('auto-ws'), new Y.Doc(), {
      WebSocket, fetch: rec.fetch, disableBc: true
    }))
    await waitFor(() => provider.collabStatus.synced, 'sync')
    assert.equal(provider.collabStatus.transport, 'websocket')
    assert.ok(provider.ws instanceof AutoSocket)
    assert.equal(rec.log.length, 0)
  })

  test('falls back to long-polling after two failed WebSocket attempts, and collaborates', async () => {
    const doc = uniqueDoc('auto-fallback')
    const { FlakyWebSocket, control } = flakyWebSocket()
    const rec = recordingFetch()
    const ydoc = new Y.Doc()
    const closes = []
    const provider = track(createCollabProvider(server.url, doc, ydoc, {
      WebSocket: FlakyWebSocket, fetch: rec.fetch, disableBc: true, user: { name: 'fallback' }
    }))
    provider.on('connection-close', (e) => closes.push(e?.code))
    await waitFor(() => provider.collabStatus.synced, 'sync over long-polling')
    assert.equal(provider.collabStatus.transport, 'polling')
    assert.equal(control.attempts, 2, 'two WebSocket attempts')
    assert.deepEqual(closes, [1006], 'the provider saw the first failure only; the second fell back in place')
    assert.equal(rec.log.filter(isOpen).length, 1)

    const peer = wsPeer(doc)
    await waitFor(() => peer.collabStatus.synced, 'peer sync')
    ydoc.getText('content').insert(0, 'polled ')
    peer.doc.getText('content').insert(0, 'socketed ')
    await waitFor(() => ydoc.getText('content').length === 16 && peer.doc.getText('content').length === 16, 'merge')
    assert.equal(ydoc.getText('content').toString(), peer.doc.getText('content').toString())
  })

  test('probes a WebSocket while long-polling and switches once it works, keeping presence', async () => {
    const doc = uniqueDoc('auto-probe')
    const { FlakyWebSocket, control } = flakyWebSocket()
    const rec = recordingFetch()
    const ydoc = new Y.Doc()
    const provider = track(createCollabProvider(server.url, doc, ydoc, {
      WebSocket: FlakyWebSocket, fetch: rec.fetch, disableBc: true, probeIntervalMs: 300,
      user: { name: 'switcher', color: '#e6194b' }
    }))
    const peer = wsPeer(doc)
    await waitFor(() => provider.collabStatus.synced && provider.collabStatus.transport === 'polling', 'sync over long-polling')
    await waitFor(() => [...peer.awareness.getStates().values()].some((s) => s.user?.name === 'switcher'), 'presence on the peer')
    const clockBefore = peer.awareness.meta.get(ydoc.clientID).clock
    const probesWhileBlocked = control.attempts
    await sleep(700)
    assert.ok(control.attempts > probesWhileBlocked, 'probes run while long-polling')
    assert.equal(provider.collabStatus.transport, 'polling', 'failed probes change nothing')

    control.blocked = false
    await waitFor(() => provider.collabStatus.synced && provider.collabStatus.transport === 'websocket', 'the switch')
    await waitFor(() => rec.log.some(isClose), 'the long-poll session to be closed')

    // the awareness clock was bumped past the old session's removal: the peer still sees us
    await sleep(500)
    const state = peer.awareness.getStates().get(ydoc.clientID)
    assert.equal(state?.user?.name, 'switcher', 'still present on the peer after the switch')
    assert.ok(peer.awareness.meta.get(ydoc.clientID).clock > clockBefore, 'clock bumped')

    ydoc.getText('content').insert(0, 'after the switch')
    await waitFor(() => peer.doc.getText('content').toString() === 'after the switch', 'edits flow over the WebSocket')
    const lpOpens = rec.log.filter(isOpen).length
    await sleep(600)
    assert.equal(rec.log.filter(isOpen).length, lpOpens, 'no more long-poll sessions')
  })

  test('when long-polling cannot reach the server either, the next attempt starts with WebSocket', async () => {
    const { FlakyWebSocket } = flakyWebSocket()
    const rec = recordingFetch({ before: () => 'drop-request' })
    const url = `${server.wsUrl}/${uniqueDoc('auto-unreachable')}`
    const Cls = AutoSocket.with({ WebSocket: FlakyWebSocket, LongPollSocket: LongPollSocket.with({ fetch: rec.fetch }) })
    const run = () => new Promise((resolve) => {
      const socket = new Cls(url)
      socket.onclose = (e) => resolve([socket.transport, e.code])
    })
    assert.deepEqual(await run(), ['websocket', 1006])
    assert.equal(Cls.serverState(url).mode, 'websocket')
    assert.deepEqual(await run(), ['polling', 1006], 'second WebSocket failure falls back in place')
    assert.equal(Cls.serverState(url).mode, 'websocket', 'long-polling failed too: start over')
    assert.equal(rec.log.filter(isOpen).length, 1)
  })
})

describe('createCollabProvider', () => {
  /** A socket class that refuses every connection with `code`; records when it was created. */
  const refusing = (code, reason = '') => {
    const times = []
    class Refusing {
      constructor (url) {
        this.url = url
        this.readyState = 0
        times.push(Date.now())
        setTimeout(() => {
          this.readyState = 3
          this.onclose?.({ code, reason })
        }, 5)
      }

      send () {}
      close () {}
    }
    Refusing.OPEN = 1
    return { Refusing, times }
  }

  test('reconnects with jittered exponential backoff and says it is offline', async () => {
    const { Refusing, times } = refusing(1011, 'store down')
    const statuses = []
    const provider = track(createCollabProvider(server.url, 'jitter', new Y.Doc(), {
      transport: 'websocket', WebSocket: Refusing, disableBc: true, maxBackoffTime: 1000,
      onStatus: (s) => statuses.push(s)
    }))
    await waitFor(() => times.length >= 6, 'six attempts', 15_000)
    provider.disconnect()
    const gaps = times.slice(1).map((t, i) => t - times[i] - 5)
    gaps.forEach((gap, i) => {
      const step = Math.min(2 ** (i + 1) * 100, 1000)
      assert.ok(gap >= step / 2 - 20 && gap <= step + 60, `attempt ${i + 2}: ${gap} ms within [${step / 2}, ${step}]`)
    })
    const offline = statuses.filter((s) => s.state === 'offline')
    assert.ok(offline.length >= 5)
    assert.equal(offline[0].code, 1011)
    assert.equal(offline[0].reason, 'server error: store down')
    assert.ok(offline.every((s) => s.retryInMs > 0))
    assert.equal(new Set(offline.map((s) => s.retryInMs)).size > 1, true)
  })

  test('stops on 4400-4499 with a readable reason', async () => {
    const { Refusing, times } = refusing(4403, 'token does not cover this document')
    const provider = track(createCollabProvider(server.url, 'forbidden', new Y.Doc(), {
      transport: 'websocket', WebSocket: Refusing, disableBc: true
    }))
    await waitFor(() => provider.collabStatus.state === 'closed', 'closed')
    await sleep(600)
    assert.equal(times.length, 1, 'no retry')
    assert.deepEqual(
      { code: provider.collabStatus.code, reason: provider.collabStatus.reason },
      { code: 4403, reason: 'access denied: token does not cover this document' }
    )
  })

  test('a WebSocket close 4400 from the real server (bad document id) is permanent', async () => {
    const provider = track(createCollabProvider(server.url, 'bad//id', new Y.Doc(), {
      transport: 'websocket', WebSocket, disableBc: true
    }))
    await waitFor(() => provider.collabStatus.state === 'closed', 'closed')
    assert.equal(provider.collabStatus.code, 4400)
  })

  test('URL helpers', () => {
    assert.equal(toSocketBase('http://h:1'), 'ws://h:1/ws')
    assert.equal(toSocketBase('https://h/prefix/'), 'wss://h/prefix/ws')
    assert.equal(toSocketBase('ws://h:1/ws'), 'ws://h:1/ws')
    assert.deepEqual(parseSocketUrl('ws://h:1/ws/a/b.c?token=t%20x&v=1'), { base: 'http://h:1', doc: 'a/b.c', token: 't x' })
    assert.deepEqual(parseSocketUrl('wss://h/p/ws/d'), { base: 'https://h/p', doc: 'd', token: null })
    assert.throws(() => parseSocketUrl('ws://h/nothing'), SyntaxError)
    assert.equal(describeClose(4401, ''), 'not signed in, or the access token expired')
    assert.equal(describeClose(4499, 'x'), 'refused by the server: x')
  })
})
