/**
 * Child process for the store crash and lock tests (not a test file):
 *   hold DIR            open the repo, print "ready", wait to be killed
 *   import DIR FILE     import FILE with small commits, print "progress N" lines
 *   gc DIR              run gc, print "removed" on every pages:removed event
 */
import { Repo } from '../../store/repo.ts'

const [cmd, dir, file] = process.argv.slice(2)
const repo = await Repo.open(dir, { commitBytes: 2 * 1024 * 1024, readChunk: 1024 * 1024, readAhead: 2, packSize: 8 * 1024 * 1024 })
if (cmd === 'hold') {
  process.stdout.write('ready\n')
  setInterval(() => {}, 1000)
} else if (cmd === 'import') {
  await repo.store.importImage(file, { name: 'killed', onProgress: p => { process.stdout.write(`progress ${p.done}\n`) } })
  process.stdout.write('done\n')
  await repo.close()
} else if (cmd === 'gc') {
  repo.store.addEventListener('pages:removed', () => { process.stdout.write('removed\n') })
  process.stdout.write('gc\n')
  await repo.store.gc()
  process.stdout.write('done\n')
  await repo.close()
}
