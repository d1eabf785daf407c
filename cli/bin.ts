#!/usr/bin/env node
// The `memfabric` executable: everything lives in cli/index.ts.
import { enableCompileCache } from 'node:module'

// cache compiled modules between runs: most of a short command's time is loading code
enableCompileCache?.()
const { main } = await import('./index.ts')
await main()
