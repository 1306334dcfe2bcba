/**
 * Workers entry of the news app (wrangler.toml `main`): the framework API,
 * the news routes and the RSS cron trigger. `wrangler dev`/`deploy` use it;
 * a user's app has the same two lines.
 */
import { createWorker } from "../edge-app";
import newsApp from "./index";

export default createWorker(newsApp);
