// memfabric status page: reads /events (server-sent snapshots), falls back to polling
// /status.json. Plain browser JavaScript, no build step, no dependencies.
// Both need the daemon's API token: the page takes it from its URL fragment (#token=…, which
// browsers never send to a server), keeps it in this tab's sessionStorage and sends it as a
// bearer token. EventSource cannot send headers, so the event stream is read with fetch.
'use strict'

const TIERS = [
  { key: 'local', label: 'local', color: '#8a94a6' },
  { key: 'site', label: 'same site', color: '#2e9e5b' },
  { key: 'remote', label: 'other site', color: '#e0a126' },
  { key: 'source', label: 'source', color: '#d64545' }
]
const POLL_INTERVAL = 2000
const SVG_NS = 'http://www.w3.org/2000/svg'

const $ = (id) => document.getElementById(id)

function el (tag, attrs = {}, ...children) {
  const node = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') node.className = v
    else if (k === 'text') node.textContent = v
    // CSSOM, not the style attribute: the page's CSP forbids inline style attributes
    else if (k === 'style') node.style.cssText = v
    else node.setAttribute(k, v)
  }
  for (const c of children) if (c != null) node.append(c)
  return node
}

function svg (tag, attrs = {}) {
  const node = document.createElementNS(SVG_NS, tag)
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v)
  return node
}

function bytes (n) {
  if (n == null || !isFinite(n)) return '–'
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let i = 0
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++ }
  return `${n >= 100 || i === 0 ? Math.round(n) : n.toFixed(1)} ${units[i]}`
}

function short (id) {
  return id.length > 16 ? `${id.slice(0, 8)}…${id.slice(-6)}` : id
}

function duration (ms) {
  if (ms < 1000) return `${Math.round(ms)} ms`
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`
}

function renderNode (status) {
  const { node } = status
  $('node-site').textContent = node.site
  $('node-site-text').textContent = node.site
  $('node-peer').textContent = node.peerId
  $('node-addresses').replaceChildren(...node.addresses.map(a => el('div', { text: a })))
  $('node-api').textContent = node.api ?? location.origin
  document.title = `memfabric · ${node.site} · ${short(node.peerId)}`
}

function renderStore (store) {
  if (store == null) return
  $('store-images').textContent = String(store.images)
  $('store-logical').textContent = bytes(store.logicalBytes)
  $('store-stored').textContent = bytes(store.storedBytes)
  $('store-pages').textContent = store.distinctPages.toLocaleString()
  $('store-dedup').textContent = store.dedupRatio > 0 ? `${store.dedupRatio.toFixed(2)}×` : '–'
}

function renderPeers (status) {
  const bySite = new Map()
  for (const p of status.peers) {
    const site = p.site ?? 'unknown'
    if (!bySite.has(site)) bySite.set(site, [])
    bySite.get(site).push(p)
  }
  $('peer-count').textContent = `${status.peers.length} in ${bySite.size} site${bySite.size === 1 ? '' : 's'}`
  if (bySite.size === 0) {
    $('sites').replaceChildren(el('p', { class: 'empty', text: 'no peers connected' }))
    return
  }
  // own site first, then by name
  const sites = [...bySite.keys()].sort((a, b) => (b === status.node.site) - (a === status.node.site) || a.localeCompare(b))
  $('sites').replaceChildren(...sites.map(site => {
    const peers = bySite.get(site).sort((a, b) => (a.rttMs ?? Infinity) - (b.rttMs ?? Infinity))
    return el('div', { class: 'site-group', 'data-site': site },
      el('h3', {}, `${site} `, el('span', { class: 'here', text: site === status.node.site ? '(this site)' : `(${peers.length} peer${peers.length === 1 ? '' : 's'})` })),
      el('table', {},
        el('tr', {}, el('th', { text: 'peer' }), el('th', { text: 'address' }), el('th', { class: 'rtt', text: 'RTT' })),
        ...peers.map(p => el('tr', { class: 'peer', 'data-peer': p.peerId },
          el('td', { class: 'mono', title: p.peerId, text: short(p.peerId) }),
          el('td', { class: 'mono', text: p.addresses[0] ?? '' }),
          el('td', { class: 'rtt', text: p.rttMs != null ? `${p.rttMs.toFixed(p.rttMs < 10 ? 1 : 0)} ms` : '–' })
        ))
      )
    )
  }))
}

/** Stacked area chart of bytes per tier over time. */
function chart (m) {
  const W = 600
  const H = 130
  const PAD = { l: 52, r: 8, t: 8, b: 18 }
  const samples = m.samples.length > 0 ? m.samples : [{ t: 0, bytes: { local: 0, site: 0, remote: 0, source: 0 } }]
  const tMax = Math.max(1, samples[samples.length - 1].t)
  const total = (s) => TIERS.reduce((a, t) => a + (s.bytes[t.key] ?? 0), 0)
  const yMax = Math.max(1, ...samples.map(total))
  const x = (t) => PAD.l + (t / tMax) * (W - PAD.l - PAD.r)
  const y = (v) => H - PAD.b - (v / yMax) * (H - PAD.t - PAD.b)
  const root = svg('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': 'bytes per tier over time' })
  root.append(svg('line', { x1: PAD.l, y1: H - PAD.b, x2: W - PAD.r, y2: H - PAD.b, stroke: '#c8cdd8' }))
  let below = samples.map(() => 0)
  for (const tier of TIERS) {
    const above = samples.map((s, i) => below[i] + (s.bytes[tier.key] ?? 0))
    if (above.some((v, i) => v !== below[i])) {
      const top = samples.map((s, i) => `${x(s.t).toFixed(1)},${y(above[i]).toFixed(1)}`)
      const bottom = samples.map((s, i) => `${x(s.t).toFixed(1)},${y(below[i]).toFixed(1)}`).reverse()
      root.append(svg('polygon', { points: [...top, ...bottom].join(' '), fill: tier.color, 'fill-opacity': '0.85', 'data-tier': tier.key }))
    }
    below = above
  }
  const yLabel = svg('text', { x: 4, y: PAD.t + 8 })
  yLabel.textContent = bytes(yMax)
  const xLabel = svg('text', { x: W - PAD.r, y: H - 4, 'text-anchor': 'end' })
  xLabel.textContent = duration(tMax)
  const zero = svg('text', { x: 4, y: H - PAD.b })
  zero.textContent = '0'
  root.append(yLabel, xLabel, zero)
  return root
}

function renderMigration (m, now) {
  const pct = m.total > 0 ? Math.floor((m.done / m.total) * 100) : (m.phase === 'done' ? 100 : 0)
  const elapsed = (m.finished ?? now) - m.started
  const title = m.name ?? short(m.root)
  const phase = m.phase === 'done' ? 'done' : m.phase === 'failed' ? `failed: ${m.error ?? ''}` : m.phase
  const tiers = el('div', { class: 'tiers' }, ...TIERS.map(t => el('span', { 'data-tier': t.key },
    el('span', { class: 'swatch', style: `background:${t.color}` }),
    `${t.label} ${bytes(m.tiers[t.key]?.bytes ?? 0)} (${(m.tiers[t.key]?.pages ?? 0).toLocaleString()} pages)`)))
  const wan = m.report != null ? el('div', { class: 'meta', text: `WAN ${bytes(m.report.wanBytes)} · ${bytes(m.report.throughput)}/s · ${m.report.droppedHolders.length} holders dropped` }) : null
  return el('div', { class: 'migration', 'data-id': String(m.id), 'data-direction': m.direction, 'data-phase': m.phase, 'data-progress': String(pct) },
    el('div', {},
      el('div', { class: 'title' }, el('span', { class: `dir ${m.direction}`, text: m.direction === 'in' ? 'IN' : 'OUT' }), title),
      el('div', { class: 'meta', text: `${m.direction === 'in' ? 'from' : 'to'} ${short(m.peer)} · root ${short(m.root)}` }),
      el('div', { class: 'bar', role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': '100', 'aria-valuenow': String(pct) },
        el('div', { class: 'fill', style: `width:${pct}%` }),
        el('div', { class: 'pct', text: `${pct} %` })),
      el('div', { class: 'meta', text: `${phase} · ${m.done.toLocaleString()} / ${m.total.toLocaleString()} page slots · ${duration(elapsed)}` }),
      tiers,
      wan),
    chart(m))
}

function renderMigrations (status) {
  const list = [...status.migrations].sort((a, b) => (a.finished == null) - (b.finished == null) || b.started - a.started)
  list.sort((a, b) => (b.finished == null) - (a.finished == null))
  if (list.length === 0) {
    $('migration-list').replaceChildren(el('p', { class: 'empty', text: 'no migrations yet' }))
    return
  }
  $('migration-list').replaceChildren(...list.map(m => renderMigration(m, status.time)))
}

function render (status) {
  renderNode(status)
  renderStore(status.store)
  renderPeers(status)
  renderMigrations(status)
  $('updated').textContent = new Date(status.time).toLocaleTimeString()
  document.body.dataset.ready = 'true'
}

function setConnection (state, text) {
  const c = $('connection')
  c.dataset.state = state
  c.textContent = text
}

const TOKEN_KEY = 'memfabric-api-token'
const RECONNECT_INTERVAL = 2000

/** The API token: from the URL fragment (then removed from the address bar), else this tab's. */
function takeToken () {
  const match = /(?:^#|&)token=([^&]+)/.exec(location.hash)
  if (match != null) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]))
    history.replaceState(null, '', location.pathname + location.search)
  }
  return sessionStorage.getItem(TOKEN_KEY)
}

const token = takeToken()
const authorized = { headers: { authorization: `Bearer ${token}` }, cache: 'no-store' }

function needToken () {
  sessionStorage.removeItem(TOKEN_KEY)
  setConnection('lost', 'needs the API token: open the link `memfabric daemon` printed, or add #token=… (the content of <repo>/api.token) to this address')
}

class Unauthorized extends Error {}

function check (r) {
  if (r.status === 401) throw new Unauthorized()
  if (!r.ok) throw new Error(String(r.status))
  return r
}

function poll () {
  fetch('/status.json', authorized)
    .then(check)
    .then(r => r.json())
    .then(s => { render(s); setConnection('live', 'polling'); setTimeout(poll, POLL_INTERVAL) })
    .catch(err => {
      if (err instanceof Unauthorized) { needToken(); return }
      setConnection('lost', 'daemon unreachable')
      setTimeout(poll, POLL_INTERVAL)
    })
}

/** Read the server-sent events of /events; calls `onStatus` with each snapshot. */
async function readEvents (onStatus) {
  const response = check(await fetch('/events', authorized))
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader()
  let buffered = ''
  while (true) {
    const { value, done } = await reader.read()
    if (done) return
    buffered += value
    let end
    while ((end = buffered.indexOf('\n\n')) >= 0) {
      const event = buffered.slice(0, end)
      buffered = buffered.slice(end + 2)
      let type = 'message'
      const data = []
      for (const line of event.split('\n')) {
        if (line.startsWith('event:')) type = line.slice(6).trim()
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''))
      }
      if (type === 'status' && data.length > 0) onStatus(JSON.parse(data.join('\n')))
    }
  }
}

function listen () {
  readEvents(s => { render(s); setConnection('live', 'live') })
    .then(() => { setConnection('lost', 'reconnecting…'); setTimeout(listen, RECONNECT_INTERVAL) })
    .catch(err => {
      if (err instanceof Unauthorized) { needToken(); return }
      setConnection('lost', 'reconnecting…')
      setTimeout(listen, RECONNECT_INTERVAL)
    })
}

function start () {
  $('legend').replaceChildren(...TIERS.map(t => el('span', {}, el('span', { class: 'swatch', style: `background:${t.color}` }), t.label)))
  if (token == null) { needToken(); return }
  if (typeof TextDecoderStream !== 'function') { poll(); return }
  listen()
}

start()
