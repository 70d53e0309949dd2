// Start a real Collab server (the repository's .venv/bin/collab) on 127.0.0.1 with an ephemeral
// port and a temporary data directory; stop it again. Shared by client_js/test and tests/browser.
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const REPO = fileURLToPath(new URL('../../../', import.meta.url))
export const COLLAB = process.env.COLLAB_BIN ?? join(REPO, '.venv', 'bin', 'collab')

/**
 * @param {{ args?: string[], env?: Record<string,string>, dataDir?: string, port?: number }} [opts]
 *   port: 0 (default) for an ephemeral port
 *   dataDir: reuse a data directory (e.g. to restart a server); it is then removed by the
 *   stop() of this server unless stop({ keepData: true })
 * @return {Promise<{url: string, wsUrl: string, port: number, dataDir: string, logs: () => string, stop: (opts?: {keepData?: boolean}) => Promise<void>}>}
 */
export const startServer = async ({ args = [], env = {}, dataDir, port = 0 } = {}) => {
  if (!existsSync(COLLAB)) {
    throw new Error(`${COLLAB} not found: run \`make install\` first (or set COLLAB_BIN)`)
  }
  dataDir = dataDir ?? (await mkdtemp(join(tmpdir(), 'collab-js-test-')))
  const child = spawn(COLLAB, ['serve', '--host', '127.0.0.1', '--port', String(port), '--data-dir', dataDir, ...args], {
    cwd: REPO,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let output = ''
  child.stdout.setEncoding('utf8')
  child.stderr.setEncoding('utf8')
  child.stderr.on('data', (chunk) => { output += chunk })
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start in 20 s:\n${output}`)), 20_000)
    child.stdout.on('data', (chunk) => {
      output += chunk
      const match = /collab listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(output)
      if (match) {
        clearTimeout(timer)
        resolve(match[1])
      }
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`server exited with ${code} before listening:\n${output}`))
    })
  })
  const exited = new Promise((resolve) => child.once('exit', resolve))
  return {
    url,
    wsUrl: url.replace('http://', 'ws://') + '/ws',
    port: Number(new URL(url).port),
    dataDir,
    logs: () => output,
    stop: async ({ keepData = false } = {}) => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM')
        const killer = setTimeout(() => child.kill('SIGKILL'), 10_000)
        await exited
        clearTimeout(killer)
      }
      if (!keepData) await rm(dataDir, { recursive: true, force: true })
    }
  }
}
