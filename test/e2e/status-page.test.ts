/**
 * The daemon's status page in a real headless browser (Debian's chromium driven by
 * playwright-core) against two real daemons in two sites: peers by site, and a migration's
 * progress bar reaching 100 % on both ends.
 *
 * MEMFABRIC_STATUS_SCREENSHOT=FILE also saves a screenshot of the destination's page while the
 * migration is under way (docs/status-page.png is made this way, with a larger image).
 */
import test from 'ava'
import { access } from 'node:fs/promises'
import { join } from 'node:path'
import { chromium } from 'playwright-core'
import type { Browser, Page } from 'playwright-core'
import { writeImage } from '../../testnet/synthetic.ts'
import { cli, ok, tempDir } from './cli-helpers.ts'
import { startDaemon } from '../fixtures/daemon.ts'

const MiB = 1024 * 1024
const CHROMIUM = '/usr/bin/chromium'
const SCREENSHOT = process.env.MEMFABRIC_STATUS_SCREENSHOT
const IMAGE_MIB = Number(process.env.MEMFABRIC_STATUS_IMAGE_MIB ?? (SCREENSHOT != null ? 256 : 24))

const hasChromium = await access(CHROMIUM).then(() => true, () => false)
const browserTest = hasChromium ? test : test.skip
if (!hasChromium) {
  console.warn(`status-page.test.ts: skipped, ${CHROMIUM} is missing (apt-get install chromium; .ci/run does)`)
}

async function launch (t: any): Promise<Browser> {
  // launch() gives the browser a fresh temporary profile and removes it on close
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    timeout: 60_000,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync']
  })
  t.teardown(async () => { await browser.close().catch(() => {}) })
  return browser
}

/** A page that fails the test on any script error or CSP violation. */
async function open (t: any, browser: Browser, url: string): Promise<{ page: Page, problems: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } })
  const problems: string[] = []
  page.on('pageerror', err => { problems.push(`page error: ${err.message}`) })
  page.on('console', msg => { if (msg.type() === 'error') problems.push(`console: ${msg.text()}`) })
  page.setDefaultTimeout(120_000)
  await page.goto(url)
  return { page, problems }
}

browserTest('the status page shows peers by site and a migration reaching 100 % on both ends', async t => {
  t.timeout(600_000)
  const dir = await tempDir(t)
  const a = join(dir, 'a')
  const b = join(dir, 'b')
  await ok(t, ['init', '--repo', a, '--site', 'paris', '--listen', '/ip4/127.0.1.31/tcp/0'])
  await ok(t, ['init', '--repo', b, '--site', 'berlin', '--listen', '/ip4/127.0.2.31/tcp/0', '--fabric-key', join(a, 'fabric.key')])
  const da = await startDaemon(t, a)
  const db = await startDaemon(t, b, ['--bootstrap', da.info.addresses[0]])

  const browser = await launch(t)
  // the token travels in the fragment, as `memfabric daemon` prints it on a terminal
  const dest = await open(t, browser, `${db.info.api}/#token=${db.token}`)
  const source = await open(t, browser, `${da.info.api}/#token=${da.token}`)
  const { page } = dest

  // this node, and its peer in the other site with an RTT
  await page.waitForSelector('body[data-ready="true"]')
  t.is(await page.textContent('#node-site'), 'berlin')
  t.is(await page.textContent('#node-peer'), db.info.peerId)
  const peerRow = `.site-group[data-site="paris"] tr.peer[data-peer="${da.info.peerId}"]`
  await page.waitForSelector(peerRow)
  await page.waitForFunction((sel) => /\d+(\.\d)? ms/.test((globalThis as any).document.querySelector(sel)?.querySelector('.rtt')?.textContent ?? ''), peerRow)
  t.regex(await page.textContent('#peer-count') ?? '', /1 in 1 site/)
  await source.page.waitForSelector(`.site-group[data-site="berlin"] tr.peer[data-peer="${db.info.peerId}"]`)

  const image = join(dir, 'vm.ram')
  await writeImage(image, { sizeBytes: IMAGE_MIB * MiB, seed: 5 })
  const imported = await ok(t, ['import', image, '--name', 'vm1', '--repo', a, '--json'])
  await source.page.waitForFunction(() => (globalThis as any).document.getElementById('store-images')?.textContent === '1')

  const migration = cli(['migrate', 'vm1', '--to', db.info.peerId, '--out', 'vm1.ram', '--repo', a, '--json'])
  const row = '.migration[data-direction="in"]'
  await page.waitForSelector(row)
  if (SCREENSHOT != null) {
    // mid-way: the bar and the chart have something to show
    await page.waitForFunction((sel) => {
      const p = Number((globalThis as any).document.querySelector(sel)?.getAttribute('data-progress'))
      return p >= 35 && p <= 80
    }, row, { polling: 50 })
    await page.screenshot({ path: SCREENSHOT, fullPage: true })
  }
  const done = `${row}[data-phase="done"][data-progress="100"]`
  await page.waitForSelector(done)
  const result = await migration
  t.is(result.code, 0, result.stderr)
  t.is(JSON.parse(result.stdout).root, imported.root)
  t.is(await page.textContent(`${done} .pct`), '100 %')
  t.regex(await page.textContent(`${done} .title`) ?? '', /vm1/)
  t.true(await page.locator(`${done} svg.chart polygon`).count() > 0, 'the chart has an area per tier that delivered bytes')
  t.is(await page.getAttribute(`${done} .bar`, 'aria-valuenow'), '100')

  // the source shows the same migration going out
  await source.page.waitForSelector('.migration[data-direction="out"][data-phase="done"][data-progress="100"]')
  await page.waitForFunction(() => (globalThis as any).document.getElementById('store-images')?.textContent === '1')

  t.deepEqual(dest.problems, [])
  t.deepEqual(source.problems, [])

  // the page took the token out of its address (bookmarks and screen shares do not show it)
  t.is(new URL(page.url()).hash, '')
  // another origin cannot read it, nor can a caller without the token
  const foreign = await fetch(`${db.info.api}/status.json`, { headers: { origin: 'http://evil.example', ...db.auth } })
  t.is(foreign.status, 403)
  t.is((await fetch(`${db.info.api}/status.json`)).status, 401)
  // opened without the token, the page says where to find it and shows no data
  const bare = await browser.newPage()
  await bare.goto(`${db.info.api}/`)
  await bare.waitForFunction(() => /needs the API token/.test((globalThis as any).document.getElementById('connection')?.textContent ?? ''))
  t.not(await bare.textContent('#node-peer'), db.info.peerId)
})
