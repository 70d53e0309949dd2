// Bundle the browser client into collab/static/build/ (build output, not committed):
//   collab-editor.js  the editor page / embed bundle (CodeMirror 6 + Yjs + client), ES module
//   collab-client.js  the client alone (createCollabProvider, AutoSocket, LongPollSocket, Y)
// plus .gz and .br siblings, which aiohttp serves to browsers that accept them, and sizes.json.
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { brotliCompressSync, constants, gzipSync } from 'node:zlib'

import * as esbuild from 'esbuild'

const here = dirname(fileURLToPath(import.meta.url))
const outdir = join(here, '..', 'collab', 'static', 'build')

const bundles = {
  'collab-editor': join(here, 'src', 'embed.js'),
  'collab-client': join(here, 'src', 'client-bundle.js')
}

await mkdir(outdir, { recursive: true })
const result = await esbuild.build({
  entryPoints: bundles,
  outdir,
  bundle: true,
  format: 'esm',
  splitting: false,
  minify: true,
  sourcemap: 'linked',
  target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
  legalComments: 'eof',
  metafile: true,
  logLevel: 'warning'
})

const sizes = {}
for (const name of Object.keys(bundles)) {
  const file = join(outdir, `${name}.js`)
  const code = await readFile(file)
  const gz = gzipSync(code, { level: 9 })
  const br = brotliCompressSync(code, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } })
  await writeFile(file + '.gz', gz)
  await writeFile(file + '.br', br)
  sizes[name] = { minified: code.length, gzip: gz.length, brotli: br.length }
  console.log(`${name}.js: ${(code.length / 1024).toFixed(1)} KiB minified, ` +
    `${(gz.length / 1024).toFixed(1)} KiB gzip, ${(br.length / 1024).toFixed(1)} KiB brotli`)
}
await writeFile(join(outdir, 'sizes.json'), JSON.stringify(sizes, null, 2) + '\n')
if (result.errors.length) process.exit(1)
