// The Collab browser client: y-websocket's WebsocketProvider over WebSocket or YLP/1
// long-polling, picked automatically.
export { createCollabProvider, describeClose, isPermanentClose } from './provider.js'
export { AutoSocket, SWITCH_CLOSE_CODE } from './auto-socket.js'
export { LongPollSocket } from './longpoll-socket.js'
export { parseSocketUrl, toSocketBase } from './urls.js'
