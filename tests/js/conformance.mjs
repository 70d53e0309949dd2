// Conformance scenarios: the stock npm `y-websocket` 3.1 WebsocketProvider (with `ws` as the
// WebSocket implementation) against a running Collab server.
//
// Usage: node conformance.mjs <scenario> <server ws base url> [scenario args...]
//   node conformance.mjs converge ws://127.0.0.1:8000/ws
//   node conformance.mjs awareness ws://127.0.0.1:8000/ws
//   node conformance.mjs late-joiner ws://127.0.0.1:8000/ws
//   node conformance.mjs forbidden-stops-retry ws://127.0.0.1:8000/ws 'a//b' 4400 [quiet ms] [token]
//   node conformance.mjs persist-write ws://127.0.0.1:8000/ws <doc id> <text>
//   node conformance.mjs persist-read ws://127.0.0.1:8000/ws <doc id> <text>
//
// Every scenario is bounded by its own timeout. The last stdout line is one JSON object
// ({"scenario": ..., "ok": true|false, ...}); the exit status is 0 on success, 1 when an
// assertion failed, 2 on a timeout and 64 on a usage error. Failures are also explained on stderr.
//
// The server's documented durability barrier is used to know that the server has everything a
// client sent: the server answers a connection's step1 with a step2 only after it has applied
// (and stored) every update that connection sent before (see `flush`).

import { randomUUID } from 'node:crypto'
import { performance } from 'node:perf_hooks'

import WebSocket from 'ws'
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'

const MESSAGE_SYNC = 0
const SYNC_STEP1 = 0
const SYNC_STEP2 = 1

class ScenarioFailure extends Error {}

const fail = (message) => {
  throw new ScenarioFailure(message)
}

const check = (condition, message) => {
  if (!condition) fail(message)
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

const randomDocId = (prefix) => `conformance-${prefix}-${randomUUID()}`

const elapsed = (since) => Math.round(performance.now() - since)

/** Poll `predicate` every 20 ms until it is true; fail with `what` after `timeoutMs`. */
const waitUntil = async (predicate, what, timeoutMs = 10_000) => {
  const deadline = performance.now() + timeoutMs
  while (!predicate()) {
    if (performance.now() > deadline) fail(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(20)
  }
}

// ---------------------------------------------------------------------------------------------
// lib0 varUint helpers (only what the durability barrier needs)

const writeVarUint = (out, value) => {
  while (value > 0x7f) {
    out.push(0x80 | (value & 0x7f))
    value = Math.floor(value / 128)
  }
  out.push(value)
}

const readVarUint = (bytes, pos) => {
  let value = 0
  let shift = 1
  for (;;) {
    if (pos >= bytes.length) return [null, pos]
    const byte = bytes[pos++]
    value += (byte & 0x7f) * shift
    if (byte < 0x80) return [value, pos]
    shift *= 128
  }
}

const encodeStep1 = (stateVector) => {
  const out = []
  writeVarUint(out, MESSAGE_SYNC)
  writeVarUint(out, SYNC_STEP1)
  writeVarUint(out, stateVector.length)
  return Uint8Array.from([...out, ...stateVector])
}

const isStep2 = (data) => {
  const bytes = new Uint8Array(data)
  const [type, pos] = readVarUint(bytes, 0)
  if (type !== MESSAGE_SYNC) return false
  const [syncType] = readVarUint(bytes, pos)
  return syncType === SYNC_STEP2
}

// ---------------------------------------------------------------------------------------------
// Providers

/** A WebSocket class (for `WebSocketPolyfill`) that counts how many sockets were opened. */
const countingWebSocket = () => {
  const counter = { attempts: 0 }
  class CountingWebSocket extends WebSocket {
    constructor (...args) {
      super(...args)
      counter.attempts++
    }
  }
  return { CountingWebSocket, counter }
}

const providers = new Set()

const connect = (serverUrl, docId, { doc = new Y.Doc(), WebSocketPolyfill = WebSocket, ...opts } = {}) => {
  const provider = new WebsocketProvider(serverUrl, docId, doc, {
    WebSocketPolyfill,
    disableBc: true,
    ...opts
  })
  providers.add(provider)
  return provider
}

const destroy = (provider) => {
  providers.delete(provider)
  provider.destroy()
}

const waitSynced = (provider, what, timeoutMs = 10_000) =>
  waitUntil(() => provider.synced, `${what} to sync (step2 from the server)`, timeoutMs)

/**
 * Durability barrier: send step1 on the provider's open socket and wait for the server's step2
 * reply. The server handles a connection's frames in order and answers step1 only after
 * everything that connection sent before is applied and stored.
 */
const flush = async (provider, what, timeoutMs = 10_000) => {
  const ws = provider.ws
  check(ws !== null && provider.wsconnected, `${what}: not connected, cannot flush`)
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      ws.removeEventListener('message', onMessage)
      reject(new ScenarioFailure(`${what}: no step2 answer to step1 within ${timeoutMs} ms`))
    }, timeoutMs)
    const onMessage = (event) => {
      if (isStep2(event.data)) {
        clearTimeout(timer)
        ws.removeEventListener('message', onMessage)
        resolve()
      }
    }
    ws.addEventListener('message', onMessage)
    ws.send(encodeStep1(Y.encodeStateVector(provider.doc)))
  })
}

const mapJson = (doc) => JSON.stringify(sortKeys(doc.getMap('meta').toJSON()))

const sortKeys = (value) => {
  if (Array.isArray(value)) return value.map(sortKeys)
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.keys(value).sort().map((k) => [k, sortKeys(value[k])]))
  }
  return value
}

const sameState = (docs) => {
  const texts = docs.map((d) => d.getText('content').toString())
  const maps = docs.map(mapJson)
  return texts.every((t) => t === texts[0]) && maps.every((m) => m === maps[0])
}

// ---------------------------------------------------------------------------------------------
// Scenarios

/** Three clients edit a Y.Text and a Y.Map concurrently; all of them converge. */
const converge = async (serverUrl) => {
  const docId = randomDocId('converge')
  const clients = [0, 1, 2].map(() => connect(serverUrl, docId))
  await Promise.all(clients.map((p, i) => waitSynced(p, `client ${i}`)))

  const rounds = 8
  const expectedTokens = []
  const edit = async (provider, i) => {
    const text = provider.doc.getText('content')
    const meta = provider.doc.getMap('meta')
    for (let round = 0; round < rounds; round++) {
      const token = `[c${i}r${round}]`
      expectedTokens.push(token)
      // insert only at the start or the end: a token is never split by a later local insert,
      // so every token must appear intact in the merged text
      provider.doc.transact(() => {
        text.insert(round % 2 === 0 ? 0 : text.length, token)
        meta.set(`c${i}`, round)
        meta.set('last', `c${i}r${round}`) // the same key from every client: last writer wins
        meta.set(`obj${i}`, { round, name: `Zoë ${i} 😀`, even: round % 2 === 0 })
      })
      // a filler that is inserted and removed again: exercises deletions
      const filler = `~${i}~`
      text.insert(text.length, filler)
      await sleep(Math.floor(Math.random() * 15))
      const at = text.toString().indexOf(filler)
      check(at >= 0, `client ${i} lost its own filler before deleting it`)
      text.delete(at, filler.length)
      await sleep(Math.floor(Math.random() * 15))
    }
  }
  const started = performance.now()
  await Promise.all(clients.map((p, i) => edit(p, i)))
  await Promise.all(clients.map((p, i) => flush(p, `client ${i}`)))

  const docs = clients.map((p) => p.doc)
  const complete = () => {
    const t = docs[0].getText('content').toString()
    return sameState(docs) && expectedTokens.every((tok) => t.includes(tok))
  }
  try {
    await waitUntil(complete, 'the three clients to converge', 15_000)
  } catch (err) {
    const states = docs.map((d) => ({ text: d.getText('content').toString(), meta: mapJson(d) }))
    fail(`${err.message}; states: ${JSON.stringify(states)}`)
  }
  const convergedMs = elapsed(started)

  const text = docs[0].getText('content').toString()
  check(!/~\d~/.test(text), `deleted fillers are still in the text: ${text}`)
  const expectedLength = expectedTokens.reduce((n, tok) => n + tok.length, 0)
  check(text.length === expectedLength, `text has ${text.length} characters, expected ${expectedLength}: ${text}`)
  const meta = docs[0].getMap('meta').toJSON()
  for (const i of [0, 1, 2]) {
    check(meta[`c${i}`] === rounds - 1, `meta.c${i} is ${meta[`c${i}`]}, expected ${rounds - 1}`)
    check(meta[`obj${i}`]?.name === `Zoë ${i} 😀`, `meta.obj${i} is ${JSON.stringify(meta[`obj${i}`])}`)
  }
  check(/^c[012]r7$/.test(meta.last), `meta.last is ${meta.last}`)

  // a fresh client gets exactly the converged state from the server
  const witness = connect(serverUrl, docId)
  await waitSynced(witness, 'the fresh witness client')
  await waitUntil(() => sameState([docs[0], witness.doc]), 'the fresh client to see the converged state', 5_000)
  const vectors = [...docs, witness.doc].map((d) => Buffer.from(Y.encodeStateVector(d)).toString('hex'))
  check(vectors.every((v) => v === vectors[0]), `state vectors differ: ${vectors.join(' ')}`)

  return { docId, clients: 3, rounds, textLength: text.length, last: meta.last, convergedMs }
}

/** Awareness: states arrive (also for a late joiner), updates propagate, and leaving removes them. */
const awareness = async (serverUrl) => {
  const docId = randomDocId('awareness')
  const a = connect(serverUrl, docId)
  const aId = a.doc.clientID
  a.awareness.setLocalStateField('user', { name: 'Alice Zoë 😀', color: '#ff0000' })
  await waitSynced(a, 'A')
  await flush(a, 'A')

  // B joins after A set its state: the server must send the states it knows on connect
  const b = connect(serverUrl, docId)
  const bId = b.doc.clientID
  await waitSynced(b, 'B')
  const stateOf = (p, id) => p.awareness.getStates().get(id)
  await waitUntil(() => stateOf(b, aId)?.user?.name === 'Alice Zoë 😀', "B to see A's user name", 5_000)

  // updates propagate both ways
  a.awareness.setLocalStateField('cursor', { anchor: 3, head: 7 })
  await waitUntil(() => stateOf(b, aId)?.cursor?.head === 7, "B to see A's cursor", 5_000)
  b.awareness.setLocalStateField('user', { name: 'Bob' })
  await waitUntil(() => stateOf(a, bId)?.user?.name === 'Bob', "A to see B's user name", 5_000)

  // A leaves cleanly (destroy sends A's own null state): B drops A's state long before the
  // 30 s awareness timeout
  let started = performance.now()
  destroy(a)
  await waitUntil(() => !b.awareness.getStates().has(aId), "B to drop A's state after A left", 5_000)
  const cleanRemovalMs = elapsed(started)

  // C vanishes without a word (TCP connection dropped, no close frame, no null state): only the
  // server can tell B that C is gone
  const c = connect(serverUrl, docId)
  const cId = c.doc.clientID
  c.awareness.setLocalStateField('user', { name: 'Carol' })
  await waitSynced(c, 'C')
  await waitUntil(() => stateOf(b, cId)?.user?.name === 'Carol', "B to see C's user name", 5_000)
  await waitUntil(() => stateOf(c, bId)?.user?.name === 'Bob', "C to see B's user name", 5_000)
  started = performance.now()
  c.shouldConnect = false // no reconnect after the abrupt close
  c.ws.terminate()
  await waitUntil(() => !b.awareness.getStates().has(cId), "B to drop C's state after C's connection dropped", 5_000)
  const abruptRemovalMs = elapsed(started)
  destroy(c)

  check(stateOf(b, bId)?.user?.name === 'Bob', 'B lost its own state')
  return { docId, cleanRemovalMs, abruptRemovalMs }
}

/** A writes and is acknowledged; a client joining later gets the full text. */
const lateJoiner = async (serverUrl) => {
  const docId = randomDocId('late-joiner')
  const docA = new Y.Doc()
  // written before connecting: travels in A's step2 answer to the server's step1
  docA.getText('content').insert(0, 'Before connect. ')
  const a = connect(serverUrl, docId, { doc: docA })
  await waitSynced(a, 'A')
  // written after the sync: travels as incremental updates
  const text = docA.getText('content')
  for (let i = 0; i < 20; i++) text.insert(text.length, `line ${i} ✓\n`)
  text.delete(0, 'Before '.length)
  docA.getMap('meta').set('title', 'Late joiner')
  await flush(a, 'A')
  const expected = text.toString()

  const c = connect(serverUrl, docId)
  await waitSynced(c, 'C')
  const got = c.doc.getText('content').toString()
  check(got === expected, `late joiner C got ${JSON.stringify(got)}, expected ${JSON.stringify(expected)}`)
  check(c.doc.getMap('meta').get('title') === 'Late joiner', 'late joiner C is missing meta.title')

  // and after A left (the room may now be reloaded from the store)
  destroy(a)
  destroy(c)
  await sleep(200)
  const d = connect(serverUrl, docId)
  await waitSynced(d, 'D')
  const gotD = d.doc.getText('content').toString()
  check(gotD === expected, `joiner D (after A left) got ${JSON.stringify(gotD)}, expected ${JSON.stringify(expected)}`)

  return { docId, textLength: expected.length }
}

/**
 * A permanent close (4400-4499) must stop the provider: exactly one connection attempt, one
 * `connection-close` with the code, one `closed` event, and no reconnect.
 */
const forbiddenStopsRetry = async (serverUrl, docId, expectedCodeArg, quietMsArg = '2000', token = '') => {
  if (docId === undefined || expectedCodeArg === undefined) {
    throw new UsageError('forbidden-stops-retry needs <doc id> <expected close code> [quiet ms] [token]')
  }
  const expectedCode = Number(expectedCodeArg)
  const quietMs = Number(quietMsArg)
  const { CountingWebSocket, counter } = countingWebSocket()
  const events = { connecting: 0, connected: 0, closes: [], closed: [], synced: 0 }
  const provider = new WebsocketProvider(serverUrl, docId, new Y.Doc(), {
    WebSocketPolyfill: CountingWebSocket,
    disableBc: true,
    connect: false,
    params: token ? { token } : {}
  })
  providers.add(provider)
  provider.on('status', ({ status }) => {
    if (status === 'connecting') events.connecting++
    if (status === 'connected') events.connected++
  })
  provider.on('connection-close', (event) => {
    events.closes.push(event === null ? null : { code: event.code, reason: String(event.reason) })
  })
  provider.on('closed', (event) => events.closed.push({ code: event.code, reason: String(event.reason) }))
  provider.on('sync', (state) => {
    if (state) events.synced++
  })
  provider.connect()

  await waitUntil(() => events.closed.length > 0 || events.closes.length > 0, 'the server to close the connection', 5_000)
  // no reconnect for a while (the first retry of a transient close comes after 200 ms)
  await sleep(quietMs)

  const summary = JSON.stringify({ attempts: counter.attempts, ...events })
  check(events.closes.length === 1, `expected exactly one connection-close, got ${events.closes.length}: ${summary}`)
  const close = events.closes[0]
  check(close !== null, `connection-close had no close event (local close?): ${summary}`)
  check(close.code === expectedCode, `close code ${close.code} (reason ${JSON.stringify(close.reason)}), expected ${expectedCode}: ${summary}`)
  check(events.closed.length === 1, `expected one 'closed' event, got ${events.closed.length}: ${summary}`)
  check(events.closed[0].code === expectedCode, `'closed' event code ${events.closed[0].code}, expected ${expectedCode}`)
  check(counter.attempts === 1, `expected one connection attempt, got ${counter.attempts}: ${summary}`)
  check(events.connecting === 1, `expected one 'connecting' status, got ${events.connecting}: ${summary}`)
  check(events.synced === 0, `a rejected connection synced: ${summary}`)
  check(provider.shouldConnect === false, 'the provider still wants to connect')
  check(provider.ws === null, 'the provider holds a socket again')
  return { docId, code: close.code, reason: close.reason, attempts: counter.attempts, quietMs }
}

/** Persistence, phase 1: write text and wait for the server's acknowledgement (step2). */
const persistWrite = async (serverUrl, docId, expected) => {
  if (docId === undefined || expected === undefined) throw new UsageError('persist-write needs <doc id> <text>')
  const p = connect(serverUrl, docId)
  await waitSynced(p, 'writer')
  const text = p.doc.getText('content')
  check(text.length === 0, `document ${docId} is not empty: ${JSON.stringify(text.toString())}`)
  // several separate updates, not one
  const parts = expected.match(/[\s\S]{1,7}/g) ?? []
  for (const part of parts) text.insert(text.length, part)
  p.doc.getMap('meta').set('phase', 'written')
  await flush(p, 'writer')
  check(text.toString() === expected, 'local text differs from what was written')
  return { docId, textLength: expected.length, updates: parts.length + 1 }
}

/** Persistence, phase 2 (after a server restart): read the text back. */
const persistRead = async (serverUrl, docId, expected) => {
  if (docId === undefined || expected === undefined) throw new UsageError('persist-read needs <doc id> <text>')
  const p = connect(serverUrl, docId)
  await waitSynced(p, 'reader')
  const got = p.doc.getText('content').toString()
  check(got === expected, `after the restart the text is ${JSON.stringify(got)}, expected ${JSON.stringify(expected)}`)
  check(p.doc.getMap('meta').get('phase') === 'written', 'after the restart meta.phase is missing')
  return { docId, textLength: got.length }
}

const SCENARIOS = {
  converge: { run: converge, timeoutMs: 45_000 },
  awareness: { run: awareness, timeoutMs: 40_000 },
  'late-joiner': { run: lateJoiner, timeoutMs: 30_000 },
  'forbidden-stops-retry': { run: forbiddenStopsRetry, timeoutMs: 20_000 },
  'persist-write': { run: persistWrite, timeoutMs: 20_000 },
  'persist-read': { run: persistRead, timeoutMs: 20_000 }
}

// ---------------------------------------------------------------------------------------------
// Main

class UsageError extends Error {}

const report = (result) => process.stdout.write(JSON.stringify(result) + '\n')

const cleanup = () => {
  for (const provider of providers) {
    try {
      provider.destroy()
    } catch {}
  }
  providers.clear()
}

const main = async () => {
  const [name, serverUrl, ...args] = process.argv.slice(2)
  const scenario = SCENARIOS[name]
  if (scenario === undefined || serverUrl === undefined || !/^wss?:\/\//.test(serverUrl)) {
    process.stderr.write(
      'usage: node conformance.mjs <scenario> <ws://host:port/ws> [args...]\n' +
      `scenarios: ${Object.keys(SCENARIOS).join(', ')}\n`
    )
    report({ scenario: name ?? null, ok: false, error: 'usage' })
    return 64
  }
  const started = performance.now()
  let timer
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`scenario timed out after ${scenario.timeoutMs} ms`)), scenario.timeoutMs)
  })
  try {
    const details = await Promise.race([scenario.run(serverUrl, ...args), timeout])
    report({ scenario: name, ok: true, ms: elapsed(started), ...details })
    return 0
  } catch (err) {
    const kind = err instanceof ScenarioFailure ? 'failed' : err instanceof UsageError ? 'usage' : 'error'
    process.stderr.write(`conformance ${name} ${kind}: ${err.stack ?? err}\n`)
    report({ scenario: name, ok: false, ms: elapsed(started), error: String(err.message ?? err) })
    if (err instanceof UsageError) return 64
    return /timed out after/.test(err.message) && !(err instanceof ScenarioFailure) ? 2 : 1
  } finally {
    clearTimeout(timer)
    cleanup()
  }
}

process.exit(await main())
