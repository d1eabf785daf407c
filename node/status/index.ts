/**
 * The daemon's status page: a static page (HTML, CSS, vanilla JS — no build step) served on
 * the control API, plus the JSON it reads. `GET /` is the page, `GET /status.json` a snapshot
 * (this node, peers by site, store figures, migrations in and out with their tier samples) and
 * `GET /events` the same snapshot pushed as server-sent events whenever a migration moves, and
 * every few seconds otherwise. Same-origin only: the ApiServer refuses foreign origins. The
 * page's files are public; its data needs the API token, given to the page in its URL fragment
 * (`http://127.0.0.1:5001/#token=…`, which `memfabric daemon` prints on a terminal).
 *
 * @example
 * ```ts
 * const status = new StatusPage(node, { apiUrl: () => api.url })
 * status.mount(api) // GET /, /status.js, /status.css, /status.json, /events
 * ```
 */
export { StatusPage } from './status-page.ts'
export type { StatusNode, StatusPageInit, StatusSnapshot } from './status-page.ts'
export * from './constants.ts'
