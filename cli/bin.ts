#!/usr/bin/env node
// The `memfabric` executable: everything lives in cli/index.ts.
import { main } from './index.ts'

await main()
