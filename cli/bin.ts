#!/usr/bin/env node
// The `memfabric` executable: everything lives in cli/index.ts.
import { enableCompileCache } from 'node:module'
import { tuneDaemonRuntime } from './runtime.ts'

// a daemon restarts itself once with its memory settings (same PID)
tuneDaemonRuntime()

// cache compiled modules between runs: most of a short command's time is loading code
enableCompileCache?.()
const { main } = await import('./index.ts')
await main()
