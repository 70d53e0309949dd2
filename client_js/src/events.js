// A minimal WebSocket-style event surface: `on<type>` handler properties plus
// addEventListener/removeEventListener. Handler exceptions are reported, never propagated into
// the transport (a browser WebSocket behaves the same way).

export const CONNECTING = 0
export const OPEN = 1
export const CLOSING = 2
export const CLOSED = 3

const report = (err) => {
  if (typeof globalThis.reportError === 'function') globalThis.reportError(err)
  else setTimeout(() => { throw err }, 0)
}

export class SocketEvents {
  constructor () {
    /** @type {Map<string, Set<Function>>} */
    this._listeners = new Map()
    this.onopen = null
    this.onmessage = null
    this.onerror = null
    this.onclose = null
  }

  get CONNECTING () { return CONNECTING }
  get OPEN () { return OPEN }
  get CLOSING () { return CLOSING }
  get CLOSED () { return CLOSED }

  addEventListener (type, listener) {
    if (typeof listener !== 'function') return
    let set = this._listeners.get(type)
    if (!set) this._listeners.set(type, (set = new Set()))
    set.add(listener)
  }

  removeEventListener (type, listener) {
    this._listeners.get(type)?.delete(listener)
  }

  /** @param {{type: string} & Record<string, any>} fields */
  _dispatch (fields) {
    const event = { target: this, currentTarget: this, ...fields }
    const handler = this['on' + fields.type]
    if (typeof handler === 'function') {
      try {
        handler.call(this, event)
      } catch (err) {
        report(err)
      }
    }
    for (const listener of [...(this._listeners.get(fields.type) ?? [])]) {
      try {
        listener.call(this, event)
      } catch (err) {
        report(err)
      }
    }
  }
}

for (const [name, value] of Object.entries({ CONNECTING, OPEN, CLOSING, CLOSED })) {
  Object.defineProperty(SocketEvents, name, { value, enumerable: true })
}
