#!/usr/bin/env node
// Entry point installed as `sed-pipe`: registers the TypeScript loader, then hands over to src/cli.ts.
import { register } from "tsx/esm/api";
register();
const { main } = await import("../src/cli.ts");
process.exitCode = await main(process.argv.slice(2));
