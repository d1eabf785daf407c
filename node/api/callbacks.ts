/**
 * The server side of RPC callbacks (see rpc.ts): a function that, when the daemon calls it,
 * asks the caller over the call's stream and settles with the caller's answer.
 */
import { randomUUID } from 'node:crypto'
import { InternalError } from '../../common/errors.ts'
import { RemoteError } from './errors.ts'
import type { CallbackAnswer, RpcLine } from './rpc.ts'

interface Pending {
  resolve(): void
  reject(err: Error): void
}

export class PendingCallbacks {
  private readonly pending = new Map<string, Pending>()

  /**
   * A function that writes a callback line for `name` and resolves once the caller answers;
   * it rejects when `signal` aborts (the caller went away).
   */
  create (name: string, write: (line: RpcLine) => void, signal: AbortSignal): () => Promise<void> {
    return async () => {
      signal.throwIfAborted()
      // unguessable: only the caller, who reads this stream, can answer it
      const id = randomUUID()
      const answered = new Promise<void>((resolve, reject) => { this.pending.set(id, { resolve, reject }) })
      const onAbort = (): void => { this.pending.get(id)?.reject(signal.reason) }
      signal.addEventListener('abort', onAbort, { once: true })
      try {
        write({ callback: { id, name } })
        await answered
      } finally {
        signal.removeEventListener('abort', onAbort)
        this.pending.delete(id)
      }
    }
  }

  /** Settle the callback `answer.id`; false when no such callback waits. */
  answer (answer: CallbackAnswer): boolean {
    const pending = typeof answer.id === 'string' ? this.pending.get(answer.id) : undefined
    if (pending == null) return false
    if (answer.error != null) {
      // the caller's failure, relayed with the caller's code (e.g. ERR_PAUSE_COMMAND)
      pending.reject(new RemoteError(String(answer.error.message ?? 'callback failed'), String(answer.error.code ?? InternalError.code)))
    } else {
      pending.resolve()
    }
    return true
  }

  /** Reject every waiting callback (server closing). */
  rejectAll (err: Error): void {
    for (const p of this.pending.values()) p.reject(err)
  }
}
