/**
 * Workers entry: the Hono app for the default pipeline. `wrangler dev` and
 * `wrangler deploy` use this module; the Node worker-host imports the same app.
 */
import { createApp } from "./app";
import { examplePipeline } from "./example/pipeline";

export const pipeline = examplePipeline;
export const app = createApp({ pipeline });
export type AppType = typeof app;

export default app;
