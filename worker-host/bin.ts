#!/usr/bin/env node
/**
 * The `edgepipe` bin (`npx edgepipe start --pipeline ./pipeline.ts`): registers
 * tsx's loader so a user's pipeline module may be TypeScript (Node 20 cannot
 * strip types), then runs the CLI. .js/.mjs modules load the same way.
 */
import { register } from "tsx/esm/api";

register();
await import("./cli.js");
