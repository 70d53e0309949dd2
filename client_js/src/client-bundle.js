// Browser entry point for the client alone (collab/static/build/collab-client.js).
import * as Y from 'yjs'

export { Y }
export * from './index.js'
