// Browser entry point (bundled to collab/static/build/collab-editor.js): exports the client and
// the editor, and mounts an editor into every element with a `data-collab-doc` attribute:
//
//   <div data-collab-doc="notes/today" style="height: 24rem"></div>
//   <script type="module" src="https://collab.example.org/static/build/collab-editor.js"></script>
//
// Optional attributes: data-collab-server (default: the server this script came from),
// data-collab-token, data-collab-transport ("auto" | "websocket" | "polling").
// Mounted editors are listed in `window.collabEditors`.

import * as Y from 'yjs'

import { mountEditor } from './editor.js'

export { Y, mountEditor }
export * from './index.js'

/** The server this bundle was loaded from: <server>/static/build/collab-editor.js */
const scriptServer = () => {
  try {
    return new URL('../../', import.meta.url).href.replace(/\/$/, '')
  } catch {
    return ''
  }
}

export const mountAll = (root = document) => {
  const editors = []
  for (const element of root.querySelectorAll('[data-collab-doc]')) {
    if (element.collabEditor) continue
    const data = element.dataset
    const editor = mountEditor(element, {
      doc: data.collabDoc,
      server: data.collabServer || scriptServer(),
      token: data.collabToken || undefined,
      transport: data.collabTransport || 'auto'
    })
    element.collabEditor = editor
    editors.push(editor)
  }
  globalThis.collabEditors = [...(globalThis.collabEditors ?? []), ...editors]
  return editors
}

if (typeof document !== 'undefined') {
  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', () => mountAll())
  } else {
    mountAll()
  }
}
