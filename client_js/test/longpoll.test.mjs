// LongPollSocket (YLP/1) against a real Collab server started by the test.
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'

import WebSocket from 'ws'
import * as Y from 'yjs'

import { LongPollSocket, createCollabProvider } from '../src/index.js'
import { startServer } from './helpers/server.mjs'
import {
  ackOf, decodeBody, frameKind, isClose, isOpen, isPoll, isSend, mintToken, recordingFetch, sleep,
  uniqueDoc, waitFor
} from './helpers/util.mjs'

const STEP1_EMPTY = Uint8Array.from([0, 0, 1, 0])

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

const wsPeer = (doc, name = 'ws-peer') => {
  const ydoc = new Y.Doc()
  return track(createCollabProvider(server.url, doc, ydoc, {
    transport: 'websocket', WebSocket, disableBc: true, user: { name, color: '#3cb44b' }
  }))
}

const openSocket = async (doc, fetchImpl) => {
  const Socket = LongPollSocket.with({ fetch: fetchImpl })
  const socket = new Socket(`${server.wsUrl}/${doc}`)
  const delivered = []
  const closes = []
  socket.onmessage = (event) => {
    assert.ok(event.data instanceof ArrayBuffer, 'message data is an ArrayBuffer')
    delivered.push(new Uint8Array(event.data))
  }
  socket.onclose = (event) => closes.push(event)
  await waitFor(() => socket.readyState === socket.OPEN || closes.length, 'the socket to open')
  assert.equal(socket.readyState, LongPollSocket.OPEN, `open failed: ${JSON.stringify(closes)}`)
  return { socket, delivered, closes }
}

const sameBytes = (a, b) => a.length === b.length && a.every((x, i) => x === b[i])

describe('LongPollSocket', () => {
  test('a provider over long-polling collaborates with a WebSocket peer (text and awareness)', async () => {
    const doc = uniqueDoc('lp-collab')
    const rec = recordingFetch()
    const lpDoc = new Y.Doc()
    const lp = track(createCollabProvider(server.url, doc, lpDoc, {
      transport: 'polling', fetch: rec.fetch, disableBc: true, user: { name: 'poller', color: '#4363d8' }
    }))
    const ws = wsPeer(doc)
    await waitFor(() => lp.collabStatus.synced && ws.collabStatus.synced, 'both to sync')
    assert.equal(lp.collabStatus.transport, 'polling')
    lpDoc.getText('content').insert(0, 'from-LP ')
    ws.doc.getText('content').insert(0, 'from-WS ')
    await waitFor(() => lpDoc.getText('content').length === 16 && ws.doc.getText('content').length === 16, 'texts to merge')
    assert.equal(lpDoc.getText('content').toString(), ws.doc.getText('content').toString())
    const names = (p) => [...p.awareness.getStates().values()].map((s) => s.user?.name).sort()
    await waitFor(() => names(lp).length === 2 && names(ws).length === 2, 'awareness both ways')
    assert.deepEqual(names(lp), ['poller', 'ws-peer'])
    assert.deepEqual(names(ws), ['poller', 'ws-peer'])
    assert.equal(rec.log.filter(isOpen).length, 1)
    assert.ok(rec.log.every((e) => !isOpen(e) || e.url.includes(`doc=${encodeURIComponent(doc)}`)))
  })

  test('a lost poll answer is polled again with the same ack: every frame delivered once, in order', async () => {
    const doc = uniqueDoc('lp-lost-poll')
    let armed = false
    let dropped = null
    const rec = recordingFetch({
      after: (entry) => {
        if (!armed || dropped || !isPoll(entry) || entry.status !== 200) return false
        const [, frames] = decodeBody(entry.response)
        if (!frames.some((f) => frameKind(f) === 'update')) return false
        dropped = entry
        return true
      }
    })
    const { socket, delivered, closes } = await openSocket(doc, rec.fetch)
    const peer = wsPeer(doc)
    await waitFor(() => peer.collabStatus.synced, 'the peer to sync')
    armed = true
    peer.doc.getText('content').insert(0, 'hello over a lossy network')
    await waitFor(() => delivered.some((f) => frameKind(f) === 'update'), 'the update to arrive')
    assert.ok(dropped, 'a poll answer carrying the update was lost')
    assert.deepEqual(closes, [], 'the socket survived the loss')

    // the poll after the lost one repeats its ack
    const polls = rec.log.filter(isPoll)
    const lostAt = polls.indexOf(dropped)
    assert.equal(ackOf(polls[lostAt + 1]), ackOf(dropped), 're-polled with the same ack')

    // the server's numbering, from every answer (lost ones included), must match what was delivered
    const byDseq = new Map()
    for (const entry of polls.filter((e) => e.status === 200)) {
      const [first, frames] = decodeBody(entry.response)
      assert.equal(first, ackOf(entry) + 1, 'answer starts at ack + 1')
      frames.forEach((frame, i) => {
        const known = byDseq.get(first + i)
        if (known) assert.ok(sameBytes(known, frame), `dseq ${first + i} re-sent identically`)
        else byDseq.set(first + i, frame)
      })
    }
    assert.equal(delivered.length, byDseq.size, 'no frame delivered twice or skipped')
    delivered.forEach((frame, i) => assert.ok(sameBytes(frame, byDseq.get(i + 1)), `frame ${i + 1} in order`))
    assert.equal(delivered.filter((f) => frameKind(f) === 'update').length, 1)
    socket.close()
  })

  test('a send whose answer is lost is retried with the same useq and applied once', async () => {
    const doc = uniqueDoc('lp-retried-send')
    let dropped = null
    const rec = recordingFetch({
      after: (entry) => {
        if (dropped || !isSend(entry) || entry.status !== 200) return false
        dropped = entry
        return true
      }
    })
    const { socket, delivered } = await openSocket(doc, rec.fetch)
    await waitFor(() => delivered.length > 0, "the server's step1")
    socket.send(STEP1_EMPTY)
    await waitFor(() => delivered.some((f) => frameKind(f) === 'step2'), 'the step2 answer')
    await sleep(800)
    const sends = rec.log.filter(isSend)
    assert.equal(sends.length, 2, 'one lost, one retried')
    assert.equal(sends[0], dropped)
    assert.ok(sameBytes(sends[0].body, sends[1].body), 'the retry carries the same frames')
    assert.deepEqual(decodeBody(sends[1].body)[0], 1, 'first_useq 1')
    assert.deepEqual(decodeBody(sends[1].response), [1], 'acked [1]')
    assert.equal(delivered.filter((f) => frameKind(f) === 'step2').length, 1, 'the server answered the step1 once')

    // numbering goes on after the retry
    socket.send(STEP1_EMPTY)
    await waitFor(() => delivered.filter((f) => frameKind(f) === 'step2').length === 2, 'the second step2')
    const last = rec.log.filter(isSend).at(-1)
    assert.deepEqual(decodeBody(last.body)[0], 2, 'next POST starts at useq 2')
    assert.deepEqual(decodeBody(last.response), [2])
    assert.equal(socket.bufferedAmount, 0)
    socket.close()
  })

  test('network errors: re-poll at once, then back off 250 ms * 2^n', async () => {
    const doc = uniqueDoc('lp-backoff')
    let failing = 0
    const rec = recordingFetch({
      before: (entry) => {
        if (failing > 0 && isPoll(entry)) {
          failing--
          return 'drop-request'
        }
        return null
      }
    })
    const { socket, closes } = await openSocket(doc, rec.fetch)
    await waitFor(() => rec.log.filter(isPoll).length >= 1, 'the first poll')
    const before = rec.log.length
    failing = 4
    socket.send(STEP1_EMPTY) // makes the held poll return, so the next polls fail
    await waitFor(() => rec.log.slice(before).filter((e) => isPoll(e) && e.fate === 'ok').length >= 1, 'a poll to get through again', 10_000)
    const attempts = rec.log.slice(before).filter(isPoll)
    const gaps = attempts.slice(1).map((e, i) => e.at - attempts[i].at)
    assert.ok(gaps[0] < 150, `first retry at once (${gaps[0]} ms)`)
    assert.ok(gaps[1] >= 200 && gaps[1] < 600, `then ~250 ms (${gaps[1]} ms)`)
    assert.ok(gaps[2] >= 450 && gaps[2] < 900, `then ~500 ms (${gaps[2]} ms)`)
    assert.ok(gaps[3] >= 900 && gaps[3] < 1600, `then ~1000 ms (${gaps[3]} ms)`)
    assert.deepEqual(closes, [])
    assert.equal(socket.readyState, LongPollSocket.OPEN)
    socket.close()
  })

  test('an unknown session (410) closes with 1001 and the provider opens a new one', async () => {
    const doc = uniqueDoc('lp-gone')
    let hijack = false
    const rec = recordingFetch({
      before: (entry) => {
        if (hijack && isPoll(entry)) {
          hijack = false
          return entry.url.replace(/\/lp\/[^/]+\/poll/, '/lp/nosuchnode.nosuchsession/poll')
        }
        return null
      }
    })
    const ydoc = new Y.Doc()
    const closes = []
    const provider = track(createCollabProvider(server.url, doc, ydoc, { transport: 'polling', fetch: rec.fetch, disableBc: true }))
    provider.on('connection-close', (event) => closes.push(event))
    await waitFor(() => provider.collabStatus.synced, 'sync')
    hijack = true
    ydoc.getText('content').insert(0, 'x')
    provider.awareness.setLocalStateField('typing', true) // echoed to us: ends the held poll
    await waitFor(() => closes.length === 1, 'the close')
    assert.equal(closes[0].code, 1001)
    assert.match(closes[0].reason, /unknown or expired session/)
    await waitFor(() => provider.collabStatus.synced && rec.log.filter(isOpen).length === 2, 'a new session to sync')
    const peer = wsPeer(doc)
    await waitFor(() => peer.doc.getText('content').toString() === 'x', 'the text on the peer')
  })

  test('a malformed poll answer closes the socket with 1002 and ends the session on the server', async () => {
    const doc = uniqueDoc('lp-garbage')
    let garbled = false
    const rec = recordingFetch({
      after: (entry) => {
        if (garbled || !isPoll(entry) || entry.status !== 200) return false
        garbled = true
        return new Response(Uint8Array.from([0xc1]), { status: 200, headers: { 'Content-Type': 'application/msgpack' } })
      }
    })
    const Socket = LongPollSocket.with({ fetch: rec.fetch })
    const socket = new Socket(`${server.wsUrl}/${doc}`)
    const events = []
    socket.onerror = () => events.push('error')
    socket.onclose = (event) => events.push(event.code)
    await waitFor(() => events.includes(1002), 'the close')
    assert.deepEqual(events, ['error', 1002])
    await waitFor(() => rec.log.some((e) => isClose(e) && e.status === 204), 'the session to be closed on the server')
  })

  test('an invalid document id is refused with 4400 and the provider stops retrying', async () => {
    const rec = recordingFetch()
    const statuses = []
    const provider = track(createCollabProvider(server.url, 'bad//id', new Y.Doc(), {
      transport: 'polling', fetch: rec.fetch, disableBc: true, onStatus: (s) => statuses.push(s)
    }))
    await waitFor(() => provider.collabStatus.state === 'closed', 'the permanent close')
    await sleep(1000)
    assert.equal(rec.log.filter(isOpen).length, 1, 'no retry')
    assert.equal(provider.collabStatus.code, 4400)
    assert.match(provider.collabStatus.reason, /^bad request: .*segment/)
  })

  test('close() delivers the frames still unacknowledged before ending the session', async () => {
    const doc = uniqueDoc('lp-close-flush')
    const rec = recordingFetch()
    const ydoc = new Y.Doc()
    const provider = createCollabProvider(server.url, doc, ydoc, { transport: 'polling', fetch: rec.fetch, disableBc: true })
    await waitFor(() => provider.collabStatus.synced, 'sync')
    ydoc.getText('content').insert(0, 'last words')
    provider.destroy() // closes the socket right after queueing the update
    await waitFor(() => rec.log.some(isClose), 'the session close')
    const closeAt = rec.log.findIndex(isClose)
    assert.ok(rec.log.slice(0, closeAt).some((e) => isSend(e) && e.status === 200), 'sent before /close')
    const peer = wsPeer(doc)
    await waitFor(() => peer.doc.getText('content').toString() === 'last words', 'the text on a new peer')
  })
})

describe('LongPollSocket with tokens', () => {
  const KEY = 'k1:0123456789abcdef0123456789abcdef'
  let authServer
  before(async () => {
    authServer = await startServer({ args: ['--auth-key', KEY] })
  })
  after(async () => {
    await authServer?.stop()
  })

  const connect = (doc, token) => track(createCollabProvider(authServer.url, doc, new Y.Doc(), {
    transport: 'polling', token, disableBc: true
  }))

  test('no token: 4401, the provider stops', async () => {
    const provider = connect('team/a')
    await waitFor(() => provider.collabStatus.state === 'closed', 'the close')
    assert.equal(provider.collabStatus.code, 4401)
    assert.match(provider.collabStatus.reason, /^not signed in/)
  })

  test('a token for another document: 4403', async () => {
    const provider = connect('other/a', await mintToken(KEY, 'team/*'))
    await waitFor(() => provider.collabStatus.state === 'closed', 'the close')
    assert.equal(provider.collabStatus.code, 4403)
  })

  test('a valid token (sent as Authorization: Bearer) syncs', async () => {
    const provider = connect('team/a', await mintToken(KEY, 'team/*'))
    await waitFor(() => provider.collabStatus.synced, 'sync')
    assert.equal(provider.collabStatus.transport, 'polling')
  })
})
