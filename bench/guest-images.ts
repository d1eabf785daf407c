/**
 * Real guest RAM images for the benchmark: small QEMU guests (TCG; Debian's cloud kernel from
 * /boot; a static-busybox initramfs built by bench/guest-initramfs.sh) run a seeded workload —
 * an access log, process heap churn, a compressed backup, compressed logs, random keys, all in
 * tmpfs — with their RAM in a `memory-backend-file`; the host `stop`s a guest over QMP when a
 * workload step is done and copies its RAM file.
 *
 *   guest-family  three siblings booted from the same kernel and initramfs, each running the
 *                 workload with its own seed, amount and role; vm1 migrates A→B, where
 *                 sibling1 and sibling2 run
 *   guest-return  one guest's RAM after step 1 (t1), then the same guest after step 2 (t2);
 *                 t2 migrates back to B, which holds t1 (so does the source: it came from B)
 *
 * Images are cached in the images directory, keyed by size (files `guest-*-<N>MiB.mem` with a
 * `.json` beside them saying how they were made); a scenario is made again when any of its
 * files is missing. Guest RAM is not bit-for-bit reproducible (KASLR, timer interrupts,
 * scheduling): the workload is seeded, the rest is what a real boot gives.
 *
 * @example
 * ```ts
 * if (await guestImagesMissing() === undefined) {
 *   const { plan } = await prepareGuestScenario('guest-family', '/tmp/images', 256 * 2 ** 20, 3)
 * }
 * ```
 */
import { execFile, spawn } from 'node:child_process'
import { once } from 'node:events'
import { access, copyFile, mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import net from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { QmpClient } from '../qemu/index.ts'
import { ScenarioError, planFromImages } from '../testnet/index.ts'
import type { ImageFile, ScenarioPlan } from '../testnet/index.ts'
import { QEMU, findKernel, guestArgs, guestPrerequisiteMissing, qemuMissing } from '../test/fixtures/guest/qemu.ts'

const run = promisify(execFile)
const BUILD = fileURLToPath(new URL('./guest-initramfs.sh', import.meta.url))
const MiB = 2 ** 20

export const GUEST_SCENARIO_NAMES = ['guest-family', 'guest-return'] as const
export type GuestScenarioName = typeof GUEST_SCENARIO_NAMES[number]

export const GUEST_SCENARIOS: Record<GuestScenarioName, string> = {
  'guest-family': 'real guest RAM: a QEMU guest migrates A→B, where two siblings booted from the same kernel and initramfs run the same kind of workload with other data',
  'guest-return': 'real guest RAM: a QEMU guest migrates back A→B after more work, where its RAM snapshot from before still is (A holds that snapshot too)'
}

/** Bump when the workload or the guest configuration changes: cached images are then made again */
export const GUEST_IMAGES_VERSION = 1
/**
 * The least guest RAM, bytes: 128 MiB boots and runs every workload step (both scenarios).
 * Below ~68 MiB Debian's cloud kernel cannot boot at all: it decompresses itself at 16 MiB and
 * needs its `init_size` above that (51.5 MiB for 6.1), so the guest resets before printing a
 * line and QEMU, run with -no-reboot, exits 0; sizes in between are not tried.
 */
export const MIN_GUEST_RAM_BYTES = 128 * MiB
/** How long a guest may take to boot and finish one workload step, ms (TCG on loaded cores) */
export const GUEST_STEP_TIMEOUT_MS = 600_000

/** One guest run: its kernel parameters, and the steps after which its RAM is copied */
export interface GuestSpec {
  /** Guest name (also the image name in the plan) */
  name: string
  seed: number
  /** Amount of work (log lines, heap churn, keys grow with it) */
  scale: number
  /** Workload role: `web` (log, heap, archives, keys) or `db` (also sorts and keeps a table) */
  role: 'web' | 'db'
  /** Steps to run; the RAM is copied after each step listed in `snapshots` */
  steps: number
  /** Image name per step whose RAM is kept */
  snapshots: Record<number, string>
}

export interface GuestImage extends ImageFile {
  guest: string
  step: number
  /** Wall time from QEMU start to the snapshot, ms */
  ms: number
}

export interface GuestImagesInfo {
  version: number
  scenario: GuestScenarioName
  sizeBytes: number
  kernel: string
  qemu: string
  made: string
  guests: GuestSpec[]
  images: GuestImage[]
}

/** Why guest images cannot be made here (QEMU, a kernel, busybox or cpio missing), or undefined. */
export async function guestImagesMissing (): Promise<string | undefined> {
  return await qemuMissing() ?? await guestPrerequisiteMissing()
}

/** The guests of a scenario; `siblings` is the number of site-B holders in guest-family. */
export function guestSpecs (scenario: GuestScenarioName, siblings: number): GuestSpec[] {
  if (scenario === 'guest-family') {
    return [
      { name: 'vm1', seed: 1, scale: 2, role: 'db', steps: 1, snapshots: { 1: 'vm1' } },
      ...Array.from({ length: siblings }, (_, i): GuestSpec => ({
        name: `sibling${i + 1}`, seed: 2 + i, scale: 1 + ((i + 2) % 3), role: i % 2 === 0 ? 'web' : 'db', steps: 1, snapshots: { 1: `sibling${i + 1}` }
      }))
    ]
  }
  return [{ name: 'vm1', seed: 11, scale: 2, role: 'web', steps: 2, snapshots: { 1: 'vm1@t1', 2: 'vm1@t2' } }]
}

/**
 * Make (or reuse) the guest images of a scenario in `dir` and plan it: site B's images on
 * hosts 1..hostsB-1 (host 1 when B has one host), the VM migrating to host `hostsB`. Throws
 * ScenarioError (`ERR_SCENARIO`) for an unknown scenario or a size that is not a whole number
 * of MiB at least MIN_GUEST_RAM_BYTES, before anything is made.
 */
export async function prepareGuestScenario (scenario: GuestScenarioName, dir: string, sizeBytes: number, hostsB = 3, options: { onStatus?(s: string): void } = {}): Promise<{ plan: ScenarioPlan, info: GuestImagesInfo }> {
  if (!GUEST_SCENARIO_NAMES.includes(scenario)) throw new ScenarioError(`unknown guest scenario '${scenario}' (one of ${GUEST_SCENARIO_NAMES.join(', ')})`)
  if (sizeBytes % MiB !== 0 || sizeBytes < MIN_GUEST_RAM_BYTES) throw new ScenarioError(`guest RAM must be a whole number of MiB, at least ${MIN_GUEST_RAM_BYTES / MiB} MiB (the least the benchmark guest is known to boot and run its workload in; Debian's cloud kernel alone needs ~68 MiB), not ${sizeBytes} bytes`)
  await mkdir(dir, { recursive: true })
  const holders = hostsB > 1 ? Array.from({ length: hostsB - 1 }, (_, i) => i + 1) : [1]
  const mib = sizeBytes / MiB
  const infoPath = join(dir, `${scenario}-${mib}MiB.json`)
  const file = (image: string): string => join(dir, `${scenario}-${image.replace(/[^A-Za-z0-9]+/g, '-')}-${mib}MiB.mem`)
  const specs = guestSpecs(scenario, holders.length)
  let info = await readFile(infoPath, 'utf8').then(t => JSON.parse(t) as GuestImagesInfo, () => undefined)
  const cached = info !== undefined && info.version === GUEST_IMAGES_VERSION && JSON.stringify(info.guests) === JSON.stringify(specs) &&
    (await Promise.all(info.images.map(async i => (await stat(i.path).catch(() => undefined))?.size === sizeBytes))).every(Boolean)
  if (!cached) info = await makeImages(scenario, specs, dir, sizeBytes, file, options.onStatus)
  else options.onStatus?.(`${scenario}: reusing the guest images made ${info!.made}`)
  await writeFile(infoPath, JSON.stringify(info, null, 2) + '\n')
  const image = (name: string): ImageFile => {
    const i = info!.images.find(i => i.name === name)
    if (i === undefined) throw new Error(`${scenario}: no image ${name}`)
    return { path: i.path, name: i.name }
  }
  const plan = scenario === 'guest-family'
    ? await planFromImages({
      scenario,
      description: GUEST_SCENARIOS[scenario],
      source: image('vm1'),
      siteB: holders.map((host, i) => ({ ...image(`sibling${i + 1}`), host })),
      destHost: hostsB
    })
    : await planFromImages({
      scenario,
      description: GUEST_SCENARIOS[scenario],
      source: image('vm1@t2'),
      siteB: [{ ...image('vm1@t1'), host: holders[0] }],
      sourceAlso: [image('vm1@t1')],
      destHost: hostsB
    })
  return { plan, info: info! }
}

async function makeImages (scenario: GuestScenarioName, specs: GuestSpec[], dir: string, sizeBytes: number, file: (image: string) => string, onStatus?: (s: string) => void): Promise<GuestImagesInfo> {
  const kernel = await findKernel()
  if (kernel === undefined) throw new Error('no /boot/vmlinuz-* kernel (apt-get install linux-image-cloud-amd64)')
  const qemu = (await run(QEMU, ['--version'])).stdout.split('\n')[0].trim()
  const scratch = await mkdtemp(join(dir, `.${scenario}-run-`))
  try {
    const initrd = join(scratch, 'guest.cpio.gz')
    await run('sh', [BUILD, initrd])
    onStatus?.(`${scenario}: booting ${specs.length} QEMU guest(s) of ${sizeBytes / MiB} MiB (TCG): ${specs.map(s => s.name).join(', ')}`)
    // the guests run side by side: on a loaded machine the wall time is the longest boot
    const images = (await Promise.all(specs.map(async spec => await runGuest(spec, { scratch, kernel, initrd, sizeBytes, file, onStatus: s => onStatus?.(`${scenario}: ${s}`) })))).flat()
    return { version: GUEST_IMAGES_VERSION, scenario, sizeBytes, kernel, qemu, made: new Date().toISOString().slice(0, 16).replace('T', ' ') + ' UTC', guests: specs, images }
  } finally {
    await rm(scratch, { recursive: true, force: true })
  }
}

interface RunGuestInit {
  scratch: string
  kernel: string
  initrd: string
  sizeBytes: number
  file: (image: string) => string
  onStatus?(s: string): void
}

/** Boot one guest, copy its RAM after each step named in its snapshots, kill it. */
async function runGuest (spec: GuestSpec, init: RunGuestInit): Promise<GuestImage[]> {
  const base = join(init.scratch, spec.name)
  const ram = `${base}.ram`
  const qmpPath = `${base}.qmp`
  const ctl = `${base}.ctl`
  const log = `${base}.log`
  const mem = `${init.sizeBytes / MiB}M`
  // ttyS0: the console (markers); ttyS1: where the guest waits for "go" between steps
  const args = guestArgs({
    mem,
    ram,
    log,
    qmp: qmpPath,
    kernel: init.kernel,
    initrd: init.initrd,
    append: `console=ttyS0 quiet panic=-1 mf.seed=${spec.seed} mf.scale=${spec.scale} mf.role=${spec.role} mf.steps=${spec.steps}`,
    serials: [`unix:${ctl},server=on,wait=off`]
  })
  const started = performance.now()
  const child = spawn(QEMU, args, { detached: true, stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.setEncoding('utf8').on('data', (s: string) => { stderr += s })
  const exited = once(child, 'exit')
  let qmp: QmpClient | undefined
  let control: net.Socket | undefined
  try {
    await poll(async () => { await access(qmpPath); return true }, 30_000, async () => `${QEMU} did not open its QMP socket: ${stderr}`, child)
    qmp = await QmpClient.connect(qmpPath)
    // held open for the guest's life: the guest reads "go" lines from it between steps
    control = net.connect(ctl)
    await once(control, 'connect')
    control.on('error', () => {})
    const images: GuestImage[] = []
    for (let step = 1; step <= spec.steps; step++) {
      await poll(async () => (await readFile(log, 'utf8')).includes(`memfabric step ${step} done`), GUEST_STEP_TIMEOUT_MS,
        async () => `guest ${spec.name} did not finish step ${step}; console: ${await tail(log)}`, child)
      const name = spec.snapshots[step]
      if (name !== undefined) {
        await qmp.execute('stop')
        const ms = performance.now() - started
        const path = init.file(name)
        await copyFile(ram, `${path}.tmp`)
        await rename(`${path}.tmp`, path)
        images.push({ path, name, guest: spec.name, step, ms })
        init.onStatus?.(`${spec.name}: step ${step} done after ${(ms / 1000).toFixed(0)} s, RAM copied as ${name}`)
        await qmp.execute('cont')
      }
      if (step < spec.steps) control.write('go\n')
    }
    return images
  } finally {
    qmp?.close()
    control?.destroy()
    if (child.exitCode === null && child.signalCode === null) {
      try { process.kill(-(child.pid as number), 'SIGKILL') } catch {}
      await exited
    }
  }
}

/** The last lines of a guest's console, for error messages. */
async function tail (path: string): Promise<string> {
  const text = await readFile(path, 'utf8').catch(() => '')
  return text.trim().split('\n').slice(-8).join(' | ')
}

async function poll (ok: () => Promise<boolean>, timeoutMs: number, message: () => Promise<string>, child: { exitCode: number | null }): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (true) {
    if (child.exitCode !== null) throw new Error(`${QEMU} exited ${child.exitCode}: ${await message()}`)
    if (await ok().catch(() => false)) return
    if (Date.now() > deadline) throw new Error(await message())
    await new Promise(resolve => setTimeout(resolve, 200))
  }
}
