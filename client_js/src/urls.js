// URL conventions of a Collab server:
//   WebSocket  ws(s)://HOST[/prefix]/ws/<doc>?token=...
//   YLP/1      http(s)://HOST[/prefix]/lp/open?doc=<doc>
// y-websocket builds the socket URL as `serverUrl + '/' + room + '?' + params`, with the room
// name not encoded (document ids only use URL-safe characters: [A-Za-z0-9._~/-]).

/**
 * Split a Collab WebSocket URL into the HTTP base, the document id and the token.
 * @param {string} wsUrl
 * @return {{ base: string, doc: string, token: string | null }}
 */
export const parseSocketUrl = (wsUrl) => {
  const url = new URL(wsUrl)
  const protocol = { 'ws:': 'http:', 'wss:': 'https:' }[url.protocol] ?? url.protocol
  const at = url.pathname.indexOf('/ws/')
  if (at < 0 || at + 4 >= url.pathname.length) {
    throw new SyntaxError(`not a Collab document URL (expected .../ws/<doc>): ${wsUrl}`)
  }
  let doc = url.pathname.slice(at + 4)
  try {
    doc = decodeURIComponent(doc)
  } catch {}
  return {
    base: `${protocol}//${url.host}${url.pathname.slice(0, at)}`,
    doc,
    token: url.searchParams.get('token')
  }
}

/**
 * The y-websocket `serverUrl` (ending in /ws) for a server given as http(s)://, ws(s)://, with or
 * without the /ws suffix, or relative to the current page in a browser.
 * @param {string} server
 */
export const toSocketBase = (server) => {
  const base = typeof location !== 'undefined' ? location.href : undefined
  const url = new URL(server || '/', base)
  url.protocol = { 'http:': 'ws:', 'https:': 'wss:' }[url.protocol] ?? url.protocol
  url.search = ''
  url.hash = ''
  let path = url.pathname.replace(/\/+$/, '')
  if (!path.endsWith('/ws')) path += '/ws'
  url.pathname = path
  return url.toString().replace(/\/+$/, '')
}
