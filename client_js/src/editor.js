// The embedded collaborative editor: CodeMirror 6 bound to the Y.Text `content` through
// y-codemirror.next, remote cursors with names and colours, who is here, a status badge, and
// undo/redo of one's own edits only (Y.UndoManager tracks local origins, never the provider's).

import * as Y from 'yjs'
import { EditorState } from '@codemirror/state'
import {
  EditorView,
  drawSelection,
  dropCursor,
  highlightActiveLine,
  highlightActiveLineGutter,
  highlightSpecialChars,
  keymap,
  lineNumbers,
  placeholder
} from '@codemirror/view'
import { defaultKeymap, indentWithTab } from '@codemirror/commands'
import { yCollab, yUndoManagerKeymap } from 'y-codemirror.next'

import { createCollabProvider } from './provider.js'
import { lighten, loadUser, saveUser } from './user.js'

const TRANSPORTS = { websocket: 'WebSocket', polling: 'long-polling' }

const CSS = `
.collab-editor{display:flex;flex-direction:column;min-height:16rem;border:1px solid #d0d7de;
  border-radius:8px;background:#fff;color:#1f2328;overflow:hidden;
  font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
.collab-bar{display:flex;flex-wrap:wrap;align-items:center;gap:.4rem .75rem;padding:.45rem .6rem;
  border-bottom:1px solid #d0d7de;background:#f6f8fa}
.collab-status{display:inline-flex;align-items:center;gap:.35rem;padding:.1rem .55rem;border-radius:999px;
  font-size:12.5px;font-weight:600;white-space:nowrap;background:#eaeef2;color:#57606a}
.collab-status::before{content:"";width:.5rem;height:.5rem;border-radius:50%;background:currentColor}
.collab-status[data-state=synced]{background:#dafbe1;color:#116329}
.collab-status[data-state=connected],.collab-status[data-state=connecting]{background:#fff8c5;color:#7d4e00}
.collab-status[data-state=offline]{background:#ffebe9;color:#a40e26}
.collab-status[data-state=closed]{background:#ffebe9;color:#a40e26}
.collab-people{display:flex;flex-wrap:wrap;gap:.3rem;margin:0;padding:0;list-style:none;flex:1 1 10rem;min-width:0}
.collab-people li{display:inline-flex;align-items:center;gap:.3rem;padding:.05rem .5rem;border-radius:999px;
  border:1px solid #d0d7de;background:#fff;font-size:12.5px;max-width:12rem;overflow:hidden;
  text-overflow:ellipsis;white-space:nowrap}
.collab-people li::before{content:"";flex:none;width:.55rem;height:.55rem;border-radius:50%;background:var(--c)}
.collab-people li.me{font-weight:600}
.collab-me{display:inline-flex;align-items:center;gap:.35rem;margin-left:auto}
.collab-me input[type=text]{width:9rem;font:inherit;font-size:16px;padding:.1rem .35rem;border:1px solid #d0d7de;border-radius:6px}
.collab-me input[type=color]{width:1.9rem;height:1.7rem;padding:0;border:1px solid #d0d7de;border-radius:6px;background:none}
.collab-cm{flex:1 1 auto;min-height:0;display:flex}
.collab-cm .cm-editor{flex:1 1 auto;min-width:0;height:100%}
.collab-cm .cm-editor.cm-focused{outline:none}
.collab-cm .cm-scroller{font:15px/1.55 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;overflow:auto}
.collab-cm .cm-content{padding:.5rem 0}
.collab-cm .cm-ySelectionInfo{font-family:system-ui,sans-serif;font-size:11px;opacity:1;top:-1.15em}
@media (max-width:600px){.collab-me{margin-left:0}.collab-me input[type=text]{width:7rem}
  .collab-cm .cm-gutters{display:none}}
`

let cssInjected = false
const injectCss = () => {
  if (cssInjected || typeof document === 'undefined') return
  cssInjected = true
  const style = document.createElement('style')
  style.dataset.collab = ''
  style.textContent = CSS
  document.head.appendChild(style)
}

const el = (tag, props = {}, children = []) => {
  const node = document.createElement(tag)
  for (const [key, value] of Object.entries(props)) {
    if (key === 'dataset') Object.assign(node.dataset, value)
    else if (key in node) node[key] = value
    else node.setAttribute(key, value)
  }
  for (const child of children) node.append(child)
  return node
}

export const statusText = (status) => {
  const via = TRANSPORTS[status.transport] ?? ''
  switch (status.state) {
    case 'synced': return `Synced · ${via}`
    case 'connected': return `Syncing · ${via}`
    case 'offline': {
      const s = Math.max(1, Math.round((status.retryInMs ?? 0) / 1000))
      return status.retryInMs != null ? `Offline · retrying in ${s} s` : 'Offline'
    }
    case 'closed': return `Closed · ${status.reason ?? ''}`
    default: return 'Connecting…'
  }
}

/**
 * Mount a collaborative editor into `target` (an element or a CSS selector).
 *
 * @param {Element | string} target
 * @param {object} opts
 * @param {string} opts.doc  document id
 * @param {string} [opts.server]  http(s)://host[:port] of the Collab server (default: this page's)
 * @param {string} [opts.token]
 * @param {'auto'|'websocket'|'polling'} [opts.transport]
 * @param {{name: string, color: string}} [opts.user]  default: remembered in localStorage
 * @param {boolean} [opts.showIdentity]  show the editable name/colour (default true)
 */
export const mountEditor = (target, opts) => {
  injectCss()
  const root = typeof target === 'string' ? document.querySelector(target) : target
  if (!root) throw new Error(`mountEditor: no element ${target}`)
  const { doc, server = '', token, transport = 'auto', showIdentity = true } = opts
  if (!doc) throw new Error('mountEditor: opts.doc (the document id) is required')

  const me = opts.user ? { ...opts.user, colorLight: lighten(opts.user.color) } : loadUser()
  const ydoc = new Y.Doc()
  const ytext = ydoc.getText('content')
  const provider = createCollabProvider(server, doc, ydoc, { token, transport, user: me })
  const awareness = provider.awareness
  const undoManager = new Y.UndoManager(ytext)

  const status = el('span', { className: 'collab-status', role: 'status', dataset: { state: 'connecting' } }, ['Connecting…'])
  const people = el('ul', { className: 'collab-people', 'aria-label': 'People here' })
  const nameInput = el('input', { type: 'text', value: me.name, maxLength: 60, 'aria-label': 'Your name', spellcheck: false })
  const colorInput = el('input', { type: 'color', value: me.color, 'aria-label': 'Your colour' })
  const identity = el('label', { className: 'collab-me' }, ['You:', nameInput, colorInput])
  const bar = el('div', { className: 'collab-bar' }, [status, people])
  if (showIdentity) bar.append(identity)
  const host = el('div', { className: 'collab-cm' })
  const container = el('div', { className: 'collab-editor', dataset: { doc } }, [bar, host])
  root.append(container)

  const view = new EditorView({
    parent: host,
    state: EditorState.create({
      doc: ytext.toString(),
      extensions: [
        lineNumbers(),
        highlightActiveLineGutter(),
        highlightSpecialChars(),
        drawSelection(),
        dropCursor(),
        highlightActiveLine(),
        EditorView.lineWrapping,
        placeholder('Start typing… everyone here sees it as you type.'),
        keymap.of([...yUndoManagerKeymap, ...defaultKeymap, indentWithTab]),
        yCollab(ytext, awareness, { undoManager }),
        EditorView.contentAttributes.of({ 'aria-label': `Document ${doc}` })
      ]
    })
  })

  let marked = false
  const showStatus = (s) => {
    if (s.synced && !marked) {
      marked = true
      globalThis.performance?.mark?.('collab-synced', { detail: { doc } })
    }
    status.dataset.state = s.state
    status.dataset.transport = s.transport ?? ''
    status.textContent = statusText(s)
    status.title = s.reason ?? ''
  }
  provider.on('collab-status', showStatus)
  showStatus(provider.collabStatus)

  const renderPeople = () => {
    const items = []
    awareness.getStates().forEach((state, clientId) => {
      const user = state.user
      if (!user || typeof user.name !== 'string') return
      const self = clientId === ydoc.clientID
      const li = el('li', { className: self ? 'me' : '', title: user.name, dataset: { client: String(clientId) } },
        [self ? `${user.name} (you)` : user.name])
      li.style.setProperty('--c', typeof user.color === 'string' ? user.color : '#888')
      items.push([self ? 0 : 1, user.name.toLowerCase(), li])
    })
    items.sort((a, b) => a[0] - b[0] || (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0))
    people.replaceChildren(...items.map((item) => item[2]))
  }
  awareness.on('change', renderPeople)
  renderPeople()

  const updateMe = () => {
    const name = nameInput.value.trim().slice(0, 60) || me.name
    const color = /^#[0-9a-f]{6}$/i.test(colorInput.value) ? colorInput.value : me.color
    Object.assign(me, { name, color, colorLight: lighten(color) })
    if (!opts.user) saveUser(me)
    awareness.setLocalStateField('user', { name, color, colorLight: me.colorLight })
  }
  nameInput.addEventListener('change', updateMe)
  nameInput.addEventListener('keydown', (event) => {
    if (event.key === 'Enter') {
      updateMe()
      view.focus()
    }
  })
  colorInput.addEventListener('input', updateMe)

  const editor = {
    doc,
    ydoc,
    ytext,
    provider,
    awareness,
    undoManager,
    view,
    element: container,
    /** resolves when the document is synced with the server */
    whenSynced: () => new Promise((resolve) => {
      if (provider.collabStatus.synced) return resolve()
      const check = (s) => {
        if (s.synced) {
          provider.off('collab-status', check)
          resolve()
        }
      }
      provider.on('collab-status', check)
    }),
    setUser: (user) => {
      nameInput.value = user.name ?? me.name
      colorInput.value = user.color ?? me.color
      updateMe()
    },
    destroy: () => {
      awareness.off('change', renderPeople)
      view.destroy()
      provider.destroy()
      undoManager.destroy()
      ydoc.destroy()
      container.remove()
    }
  }
  return editor
}
